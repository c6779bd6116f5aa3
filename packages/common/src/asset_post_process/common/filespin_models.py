"""Typed views of what the FileSpin API returns: user settings (addon blocks) and asset data.

Parsing is lenient where FileSpin's documents vary (``event-hooks`` or ``event_hooks``; ``disposition``
beside the hooks or inside them) and strict where a wrong type would change a decision.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

HOOKS_KEYS = ("event-hooks", "event_hooks")


class SchemaCriteria(BaseModel):
    """A ``file-data-updated`` hook's condition on the asset's custom data."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    data_schema_id: int | str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        """Empty criteria match every asset."""
        return self.data_schema_id is None and not self.fields


class EventHook(BaseModel):
    """One event hook of an addon: whether it is on, for which content types, under which criteria."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    enabled: StrictBool = False
    content_types: list[str] = Field(default_factory=list)
    schema_criteria: SchemaCriteria | None = None

    @field_validator("content_types", mode="before")
    @classmethod
    def _single_to_list(cls, value: object) -> object:
        if value is None:
            return []
        return [value] if isinstance(value, str) else value


class AddonSettings(BaseModel):
    """A user's settings for one addon."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    added: StrictBool = False
    enabled: StrictBool = False
    hooks: dict[str, EventHook] = Field(default_factory=dict)
    disposition: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_api(cls, raw: Any) -> AddonSettings:
        """Parse one addon block of ``GET /api/v1/user/settings``; ``ValueError`` says what is malformed."""
        if not isinstance(raw, dict):
            raise ValueError("addon settings are not an object")
        settings = raw.get("settings") or {}
        if not isinstance(settings, dict):
            raise ValueError("'settings' is not an object")
        hooks_raw: dict[str, Any] = {}
        for name in HOOKS_KEYS:
            block = settings.get(name)
            if isinstance(block, dict):
                hooks_raw.update(block)
            elif block is not None:
                raise ValueError(f"'{name}' is not an object")
        disposition = settings.get("disposition", hooks_raw.pop("disposition", None)) or {}
        hooks_raw.pop("disposition", None)
        try:
            return cls(
                added=raw.get("added", False),
                enabled=raw.get("enabled", False),
                hooks={name: EventHook.model_validate(hook) for name, hook in hooks_raw.items()},
                disposition=disposition,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"malformed addon settings at {where or 'top'}: {first['msg']}") from None


class UserSettings(BaseModel):
    """The parts of a user's settings this service reads: the raw addon blocks, by addon key."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    addons: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_api(cls, payload: Any) -> UserSettings:
        """Parse ``{"status": "OK", "data": {...}}``, or the ``data`` object alone."""
        if not isinstance(payload, dict):
            raise ValueError("user settings are not an object")
        data = payload.get("data", payload)
        if not isinstance(data, dict):
            raise ValueError("user settings 'data' is not an object")
        addons = data.get("addons") or {}
        if not isinstance(addons, dict):
            raise ValueError("user settings 'addons' is not an object")
        return cls(addons=addons)


class AssetData(BaseModel):
    """``GET /api/v1/assets/{id}/data``: the fields the planner reads; the rest is kept as is."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str | None = None
    status: str | None = None
    content_type: str | None = None
    data_schema_id: int | str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    addons_info: dict[str, Any] = Field(default_factory=dict)

    @field_validator("data", "addons_info", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return {} if value is None else value

    @classmethod
    def from_api(cls, payload: Any) -> AssetData:
        """Parse the asset JSON, bare or wrapped in ``{"status": ..., "data": {...}}``; ``ValueError`` if malformed."""
        if isinstance(payload, dict) and isinstance(payload.get("data"), dict) and "content_type" not in payload:
            inner = payload["data"]
            if "content_type" in inner or "id" in inner:
                payload = inner
        try:
            return cls.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"malformed asset data at {where or 'top'}: {first['msg']}") from None
