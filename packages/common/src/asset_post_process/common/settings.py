"""Service settings: ``POSTPROCESS_*`` environment variables, each also readable from ``<NAME>_FILE``.

Settings are validated once, at start-up, by :func:`load_settings`; a bad or missing value raises
:class:`ConfigurationError` naming the environment variable, never echoing a secret value.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any, Literal, TypeVar

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

ENV_PREFIX = "POSTPROCESS_"

DEFAULT_PROCESS_QUEUE = "filespin-asset-post-process"
DEFAULT_TRIGGER_QUEUE = "taskq_filespin-trigger-addon.service"

SettingsT = TypeVar("SettingsT", bound="Settings")

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
WorkerPool = Literal["prefork", "threads", "solo", "gevent", "eventlet"]


class ConfigurationError(Exception):
    """A setting is missing or invalid; the message names the environment variable."""


def env_name(field_name: str) -> str:
    """Return the environment variable that sets ``field_name``."""
    return f"{ENV_PREFIX}{field_name.upper()}"


class FileEnvSettingsSource(EnvSettingsSource):
    """Reads ``POSTPROCESS_<NAME>_FILE`` (a Docker secret) when ``POSTPROCESS_<NAME>`` is not set."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        env_var = env_name(field_name)
        file_var = f"{env_var}_FILE"
        path = os.environ.get(file_var)
        if not path:
            return None, field_name, False
        if env_var in os.environ:
            raise ConfigurationError(f"{env_var} and {file_var} are both set: set only one of them")
        try:
            raw = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(f"{file_var}: cannot read {path!r} ({exc.strerror})") from None
        return raw, field_name, self.field_is_complex(field)


class Settings(BaseSettings):
    """Everything the workers, the health API and the CLI read from their environment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # Redis: one URL for broker and cache, each overridable.
    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str | None = None
    cache_url: str | None = None
    key_prefix: str = Field(default="postprocess", pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    # FileSpin
    filespin_api_url: str = "https://app.filespin.io"
    addon_urls: dict[str, str] = Field(default_factory=dict)
    addon_registry: dict[str, dict[str, Any]] = Field(default_factory=dict)
    http_connect_timeout: float = Field(default=3.0, gt=0)
    http_read_timeout: float = Field(default=30.0, gt=0)
    http_max_connections: int = Field(default=100, ge=1)

    # Secrets
    apikey_keys: SecretStr
    apikey_max_age_seconds: int | None = Field(default=None, gt=0)
    operator_token: SecretStr | None = None

    # Queues
    process_queue: str = Field(default=DEFAULT_PROCESS_QUEUE, min_length=1)
    trigger_queue: str = Field(default=DEFAULT_TRIGGER_QUEUE, min_length=1)

    # Reliability
    # Longer than any single task run; retries wait in Redis (delayed.py), not in the broker.
    visibility_timeout_seconds: int = Field(default=300, ge=10)
    retry_backoff_base_seconds: float = Field(default=2.0, gt=0)
    retry_backoff_max_seconds: float = Field(default=600.0, gt=0)
    process_max_retries: int = Field(default=10, ge=0)
    trigger_max_retries: int = Field(default=10, ge=0)
    not_ready_max_retries: int = Field(default=8, ge=0)
    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_open_seconds: float = Field(default=30.0, gt=0)
    addon_rate_limit_per_second: float = Field(default=25.0, gt=0)

    # Redis retention
    settings_cache_ttl_seconds: int = Field(default=300, ge=1)
    dedup_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    decisions_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    decisions_per_asset: int = Field(default=50, ge=1)
    dead_letter_max: int = Field(default=10_000, ge=1)
    heartbeat_ttl_seconds: int = Field(default=30, ge=2)

    # Workers
    process_pool: WorkerPool = "threads"
    process_concurrency: int = Field(default=8, ge=1)
    trigger_pool: WorkerPool = "threads"
    # 64 threads: measured in packages/trigger-worker/bench (see its README); threads beat prefork and gevent.
    trigger_concurrency: int = Field(default=64, ge=1)

    log_level: LogLevel = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, FileEnvSettingsSource(settings_cls))

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("apikey_keys")
    @classmethod
    def _valid_fernet_keys(cls, value: SecretStr) -> SecretStr:
        keys = [k.strip() for k in value.get_secret_value().split(",") if k.strip()]
        if not keys:
            raise ValueError("no Fernet key given")
        for position, key in enumerate(keys, start=1):
            try:
                Fernet(key)
            except ValueError:
                raise ValueError(f"key #{position} is not a valid Fernet key (32 url-safe base64 bytes)") from None
        return value

    @field_validator("redis_url", "broker_url", "cache_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("filespin_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("addon_urls")
    @classmethod
    def _addon_urls(cls, value: dict[str, str]) -> dict[str, str]:
        for key, url in value.items():
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{key}: must be an http:// or https:// URL")
        return {key: url.rstrip("/") for key, url in value.items()}

    @property
    def effective_broker_url(self) -> str:
        """The broker URL: ``POSTPROCESS_BROKER_URL`` or else ``POSTPROCESS_REDIS_URL``."""
        return self.broker_url or self.redis_url

    @property
    def effective_cache_url(self) -> str:
        """The cache URL: ``POSTPROCESS_CACHE_URL`` or else ``POSTPROCESS_REDIS_URL``."""
        return self.cache_url or self.redis_url

    @property
    def fernet_keys(self) -> list[str]:
        """The configured Fernet keys, newest first."""
        return [k.strip() for k in self.apikey_keys.get_secret_value().split(",") if k.strip()]


def _describe(error: dict[str, Any]) -> str:
    location = error.get("loc") or ()
    field = str(location[0]) if location else "?"
    detail = str(error.get("msg", "invalid value"))
    if error.get("type") == "missing":
        detail = "is required but not set"
    return f"{env_name(field)}: {detail}"


def load_settings(cls: type[SettingsT] = Settings, **overrides: Any) -> SettingsT:  # type: ignore[assignment]
    """Read and validate ``cls`` (a :class:`Settings`); raise :class:`ConfigurationError` naming every bad variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        problems = "; ".join(_describe(dict(e)) for e in exc.errors(include_input=False, include_url=False))
        raise ConfigurationError(f"invalid settings: {problems}") from None
    except SettingsError as exc:
        if isinstance(exc.__cause__, ConfigurationError):  # raised by FileEnvSettingsSource
            raise exc.__cause__ from None
        # pydantic-settings names the field in its message ("error parsing value for field ...").
        raise ConfigurationError(f"invalid settings: {_settings_error_text(exc)}") from None


def _settings_error_text(exc: SettingsError) -> str:
    text = str(exc)
    marker = 'field "'
    if marker in text:
        field = text.split(marker, 1)[1].split('"', 1)[0]
        return f"{env_name(field)}: not valid JSON"
    return text


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()


def dumps_public(settings: Settings) -> str:
    """Settings as JSON for diagnostics, secrets masked."""
    return json.dumps(settings.model_dump(mode="json"), sort_keys=True)
