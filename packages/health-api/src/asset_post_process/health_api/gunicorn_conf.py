"""Gunicorn configuration of the health API, read from the ``POSTPROCESS_*`` settings.

Shipped inside the package so an installed copy finds it without a path:

    gunicorn -c python:asset_post_process.health_api.gunicorn_conf asset_post_process.health_api.app:app

(``packages/health-api/gunicorn.conf.py`` in the repository re-exports this module, for ``-c <path>``.)
Bind, workers, timeouts and the access log come from :class:`HealthSettings`; logs are JSON lines.
"""

from __future__ import annotations

from typing import Any

from asset_post_process.common.logs import configure_logging
from asset_post_process.health_api.settings import get_health_settings

_settings = get_health_settings()

wsgi_app = "asset_post_process.health_api.app:app"
bind = [_settings.health_bind]
workers = _settings.health_workers
worker_class = "uvicorn_worker.UvicornWorker"
timeout = _settings.health_worker_timeout
graceful_timeout = _settings.health_graceful_timeout
keepalive = 5
accesslog = "-" if _settings.health_access_log else None
errorlog = "-"
loglevel = _settings.log_level.lower()
logger_class = "asset_post_process.health_api.gunicorn_logging.JsonLogger"
proc_name = "postprocess-health-api"
# No gunicornc control socket: unused here, and its default path would clash between replicas on one host.
control_socket_disable = True


def on_starting(server: Any) -> None:
    """Gunicorn hook, in the master before the workers fork: the app's own log records as JSON lines too."""
    configure_logging(_settings.log_level)


__all__ = [
    "accesslog",
    "bind",
    "control_socket_disable",
    "errorlog",
    "graceful_timeout",
    "keepalive",
    "logger_class",
    "loglevel",
    "on_starting",
    "proc_name",
    "timeout",
    "worker_class",
    "workers",
    "wsgi_app",
]
