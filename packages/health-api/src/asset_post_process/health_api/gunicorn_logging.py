"""Gunicorn's logs as JSON lines: its error log with common's formatter, the access log one object per request."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from gunicorn import glogging

from asset_post_process.common.logs import JsonFormatter
from asset_post_process.common.redaction import redact


class AccessJsonFormatter(logging.Formatter):
    """One JSON object per request, from uvicorn's access records (or Gunicorn's own, for sync workers)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": "access",
        }
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            # uvicorn.access: (client_addr, method, full_path, http_version, status_code)
            client, method, path, http_version, status_code = args
            entry.update(client=client, method=method, path=path, http_version=http_version, status=status_code)
        elif isinstance(args, dict):
            # gunicorn.access atoms: h=remote address, m=method, U=path, q=query, s=status, D=microseconds
            entry.update(
                client=args.get("h"),
                method=args.get("m"),
                path=args.get("U"),
                query=args.get("q") or None,
                status=args.get("s"),
                duration_ms=round(int(args.get("D", 0)) / 1000, 3),
            )
        else:
            entry["message"] = record.getMessage()
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


class JsonLogger(glogging.Logger):  # type: ignore[misc]  # gunicorn is untyped
    """Gunicorn's logger class with JSON formatters on its error and access handlers."""

    def setup(self, cfg: Any) -> None:
        """Set up Gunicorn's handlers, then make them write JSON."""
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())
        for handler in self.access_log.handlers:
            handler.setFormatter(AccessJsonFormatter())
