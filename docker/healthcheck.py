"""The container's health probe: exit 0 when the health API answers 200 on ``/healthcheck``, else 1.

    python3 /opt/postprocess/docker/healthcheck.py            (Dockerfile HEALTHCHECK and stack.yml)

The address is the API's own bind, ``POSTPROCESS_HEALTH_BIND`` (``host:port`` or ``unix:PATH``; default
``0.0.0.0:8000``, probed on 127.0.0.1). The timeout (``POSTPROCESS_HEALTHCHECK_TIMEOUT``, 2 s) stays below
the HEALTHCHECK's own. Standard library only: slim images have no curl.
"""

from __future__ import annotations

import http.client
import os
import socket
import sys

DEFAULT_BIND = "0.0.0.0:8000"  # the default of POSTPROCESS_HEALTH_BIND
PATH = "/healthcheck"


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (for ``POSTPROCESS_HEALTH_BIND=unix:PATH``)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def connection(bind: str, timeout: float) -> http.client.HTTPConnection:
    """A connection to the API listening on ``bind`` (a wildcard host is probed on the loopback address)."""
    if bind.startswith("unix:"):
        return UnixHTTPConnection(bind.removeprefix("unix:"), timeout)
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - compared, not bound
        host = "127.0.0.1"
    return http.client.HTTPConnection(host, int(port), timeout=timeout)


def probe(bind: str, timeout: float) -> int:
    """GET /healthcheck; the HTTP status, or 0 when nothing answered in time."""
    conn = connection(bind, timeout)
    try:
        conn.request("GET", PATH, headers={"User-Agent": "postprocess-healthcheck"})
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def main() -> int:
    """Entry point: 0 for a 200, 1 otherwise (Docker's healthy / unhealthy)."""
    bind = os.environ.get("POSTPROCESS_HEALTH_BIND", DEFAULT_BIND).split(",")[0].strip()
    try:
        timeout = float(os.environ.get("POSTPROCESS_HEALTHCHECK_TIMEOUT", "2"))
        status = probe(bind, timeout)
    except ValueError:  # a port or timeout that is not a number
        print(f"healthcheck: cannot probe POSTPROCESS_HEALTH_BIND={bind!r}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"healthcheck: GET {PATH} -> {status or 'no answer'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
