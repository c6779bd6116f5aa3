"""JSON log lines, one per record, carrying the event context and scrubbed of secrets."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

from asset_post_process.common.redaction import redact

#: Celery's per-task INFO lines ("received", "succeeded"), quiet unless the level is DEBUG.
CELERY_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")

#: Fields a log call may pass through ``extra=`` that end up as top-level JSON keys.
CONTEXT_FIELDS = (
    "event_id",
    "asset_id",
    "addon",
    "event_type",
    "action",
    "outcome",
    "reason",
    "reason_code",
    "status_code",
    "attempt",
    "job_id",
    "addon_job_id",
    "duration_ms",
    "task",
    "queue",
    "worker",
    "dead_letter_id",
    "retry_in_seconds",
)

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("log_context", default=None)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Attach ``fields`` (event_id, asset_id, addon, ...) to every log line inside the block."""
    current = _context.get() or {}
    token = _context.set({**current, **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object per line, secrets redacted."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context.get() or {})
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


class RedactingFilter(logging.Filter):
    """Scrubs secrets from records formatted by other formatters (Celery's own, for instance)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, Mapping):
            # A "%(name)s"-style message (Celery's "Task %(name)s[%(id)s] received") keeps a mapping.
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        elif record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in args)
        return True


def configure_logging(level: str = "INFO") -> None:
    """Send every log record to stderr as JSON at ``level`` (idempotent)."""
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO; keep those at WARNING so a line per call does not drown decisions.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # Celery's "Task ... received" / "succeeded" lines repeat the service's own decision lines (event_id, outcome,
    # duration) twice per task and cost CPU per task (measured by make bench, docs/performance.md); kept at DEBUG.
    quiet = logging.WARNING if logging.getLevelName(level.upper()) != logging.DEBUG else logging.NOTSET
    for name in CELERY_TASK_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
