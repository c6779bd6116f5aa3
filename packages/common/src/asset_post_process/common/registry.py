"""The addon registry: what the service knows about each addon, as data.

Built-in entries cover FACE_RECOGNITION, SCENE_CLASSIFICATION and EMOTION_RECOGNITION; operators add or
override entries without code through ``POSTPROCESS_ADDON_REGISTRY`` (a JSON object keyed by addon key,
each value holding the fields of :class:`AddonSpec`), and point an addon at its own host with
``POSTPROCESS_ADDON_URLS``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from asset_post_process.common.contract import ADDON_KEY_PATTERN


class DeleteAction(BaseModel):
    """How to undo an addon's output when an asset is deleted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="Path on the addon's base URL, e.g. /api/v1/assets/addons/face_recognition/delete")
    method: str = "POST"
    max_ids: int = Field(default=100, ge=1)


class AddonSpec(BaseModel):
    """One addon: where it is called, what it accepts and how to tell it already ran."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(pattern=ADDON_KEY_PATTERN)
    path: str = Field(description="Path template of the process call; {asset_id} is filled in.")
    method: str = "POST"
    accepts: tuple[str, ...] = Field(
        default=("*/*",), description="Content types the addon can handle (type/*, */* allowed)."
    )
    output_fields: tuple[str, ...] = Field(
        default=(), description="Reserved custom-data fields the addon writes on success."
    )
    processed_marker: str | None = Field(
        default=None, description="Another custom-data field whose presence means the addon already ran."
    )
    delete: DeleteAction | None = None

    @property
    def processed_fields(self) -> tuple[str, ...]:
        """Custom-data fields whose presence means the addon already processed the asset."""
        return (*self.output_fields, self.processed_marker) if self.processed_marker else self.output_fields

    def process_path(self, asset_id: str) -> str:
        """The process call's path for ``asset_id``."""
        return self.path.format(asset_id=asset_id)


BUILTIN_ADDONS: tuple[AddonSpec, ...] = (
    AddonSpec(
        key="FACE_RECOGNITION",
        path="/api/v1/assets/{asset_id}/addons/face_recognition",
        accepts=("image/*",),
        output_fields=("_filespin_fr_count",),
        delete=DeleteAction(path="/api/v1/assets/addons/face_recognition/delete"),
    ),
    AddonSpec(
        key="SCENE_CLASSIFICATION",
        path="/api/v1/assets/{asset_id}/addons/scene_classification",
        accepts=("image/*",),
        output_fields=("_filespin_scene_labels",),
    ),
    AddonSpec(
        key="EMOTION_RECOGNITION",
        path="/api/v1/assets/{asset_id}/addons/emotion_recognition",
        accepts=("image/*",),
        output_fields=("_filespin_emotion_labels",),
    ),
)


class RegistryError(ValueError):
    """An operator-supplied registry entry is invalid."""


class AddonRegistry(Mapping[str, AddonSpec]):
    """Addon key -> :class:`AddonSpec`, plus the base URL each addon is called on."""

    def __init__(
        self,
        specs: Mapping[str, AddonSpec],
        default_base_url: str,
        base_urls: Mapping[str, str] | None = None,
    ) -> None:
        self._specs = dict(specs)
        self._default_base_url = default_base_url.rstrip("/")
        self._base_urls = {k: v.rstrip("/") for k, v in (base_urls or {}).items()}

    @classmethod
    def build(
        cls,
        default_base_url: str,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        base_urls: Mapping[str, str] | None = None,
    ) -> AddonRegistry:
        """The built-in addons, with ``overrides`` merged over them field by field."""
        specs = {spec.key: spec for spec in BUILTIN_ADDONS}
        for key, fields in (overrides or {}).items():
            base = specs[key].model_dump() if key in specs else {}
            try:
                specs[key] = AddonSpec.model_validate({**base, **dict(fields), "key": key})
            except ValidationError as exc:
                raise RegistryError(f"addon registry entry {key!r} is invalid: {exc.errors()[0]['msg']}") from None
        return cls(specs, default_base_url, base_urls)

    def base_url(self, key: str) -> str:
        """Where ``key`` is served: its own URL from ``POSTPROCESS_ADDON_URLS``, else the FileSpin API."""
        return self._base_urls.get(key, self._default_base_url)

    def __getitem__(self, key: str) -> AddonSpec:
        return self._specs[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)
