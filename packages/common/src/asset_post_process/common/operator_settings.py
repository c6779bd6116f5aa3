"""Settings for programs that read and move messages but never decrypt a key: the health API and the CLI.

They take every ``POSTPROCESS_*`` variable the workers take, except that ``POSTPROCESS_APIKEY_KEYS`` may be
absent: it matters only to what encrypts or decrypts (``postprocess enqueue``, ``postprocess encrypt-key``),
and those ask for it through :attr:`OperatorSettings.fernet_keys`, which then names the missing variable.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import SecretStr, field_validator

from asset_post_process.common.settings import ConfigurationError, Settings, env_name, load_settings

OperatorSettingsT = TypeVar("OperatorSettingsT", bound="OperatorSettings")


class OperatorSettings(Settings):
    """:class:`Settings` with ``POSTPROCESS_APIKEY_KEYS`` optional."""

    # Optional here, required for workers: a narrower field type than the base class declares, on purpose.
    apikey_keys: SecretStr | None = None  # type: ignore[assignment]

    @field_validator("apikey_keys")
    @classmethod
    def _valid_fernet_keys(cls, value: SecretStr | None) -> SecretStr | None:  # type: ignore[override]
        return None if value is None else Settings._valid_fernet_keys(value)

    @property
    def fernet_keys(self) -> list[str]:
        """The configured Fernet keys, newest first; :class:`ConfigurationError` when none are configured."""
        if self.apikey_keys is None:
            raise ConfigurationError(f"invalid settings: {env_name('apikey_keys')}: is required but not set")
        return super().fernet_keys


def load_operator_settings(cls: type[OperatorSettingsT], **overrides: Any) -> OperatorSettingsT:
    """Read and validate ``cls`` from the environment; :class:`ConfigurationError` names every bad variable."""
    return load_settings(cls, **overrides)
