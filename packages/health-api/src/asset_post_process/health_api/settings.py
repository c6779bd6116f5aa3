"""The health API's settings: the service's ``POSTPROCESS_*`` variables plus its own ``POSTPROCESS_HEALTH_*``.

``POSTPROCESS_APIKEY_KEYS`` is not needed: the API never decrypts a key (replayed messages stay encrypted).
"""

from __future__ import annotations

import functools

from pydantic import Field

from asset_post_process.common.operator_settings import OperatorSettings, load_operator_settings


class HealthSettings(OperatorSettings):
    """Settings of the health API and of its Gunicorn server."""

    health_bind: str = Field(
        default="0.0.0.0:8000",  # inside a container: Swarm probes it from outside
        min_length=1,
        description="Gunicorn bind address (host:port or unix:PATH).",
    )
    health_workers: int = Field(default=2, ge=1, le=64, description="Gunicorn worker processes.")
    health_graceful_timeout: int = Field(default=10, ge=1, description="Seconds to finish requests on stop.")
    health_worker_timeout: int = Field(default=30, ge=1, description="Seconds before a silent worker is killed.")
    health_redis_timeout: float = Field(
        default=0.5, gt=0, le=10, description="Socket timeout (seconds) of the health checks' Redis calls."
    )
    health_access_log: bool = Field(default=True, description="Write one JSON access-log line per request.")


def load_health_settings() -> HealthSettings:
    """Read and validate the health API's settings (:class:`ConfigurationError` names any bad variable)."""
    return load_operator_settings(HealthSettings)


@functools.cache
def get_health_settings() -> HealthSettings:
    """The process-wide health API settings, loaded once."""
    return load_health_settings()
