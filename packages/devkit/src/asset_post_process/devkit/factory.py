"""Builders of realistic test data: asset ids, assets, users' addon settings, and valid ``process_asset`` messages.

from asset_post_process.devkit import factory

settings = factory.user_settings(
    factory.addon("FACE_RECOGNITION", hooks={"file-saved": factory.hook(["image/*"])}),
    factory.addon("SCENE_CLASSIFICATION", hooks={
        "file-data-updated": factory.hook(["image/*"], schema_criteria={"data_schema_id": 1,
                                                                        "fields": {"assetCode": "GM"}})}),
)
asset = factory.image_asset(data={"assetCode": "GM"}, data_schema_id=1)
messages = factory.MessageFactory([fernet_key])
message = messages.build(apikey=key, asset_id=asset["id"], event_type="file-saved")
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from celery import Celery
from cryptography.fernet import Fernet

from asset_post_process.common.crypto import ApiKeyCipher
from asset_post_process.common.producer import EventProducer

BUILTIN_ADDONS = ("FACE_RECOGNITION", "SCENE_CLASSIFICATION", "EMOTION_RECOGNITION")
EVENT_TYPES = ("file-saved", "file-data-updated", "file-deleted")

_TITLES = {
    "FACE_RECOGNITION": ("Face Recognition", "Detects and recognises faces in images."),
    "SCENE_CLASSIFICATION": ("Scene Classification", "Labels the scene of an image."),
    "EMOTION_RECOGNITION": ("Emotion Recognition", "Recognises emotions on the faces of an image."),
}

_KINDS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "image/jpeg": ("jpg", 2_457_600, {"width": 4032, "height": 3024}),
    "image/png": ("png", 1_048_576, {"width": 1920, "height": 1080}),
    "image/webp": ("webp", 524_288, {"width": 1600, "height": 1200}),
    "video/mp4": ("mp4", 73_400_320, {"width": 1920, "height": 1080, "duration": 42.5}),
    "application/pdf": ("pdf", 3_145_728, {"pages": 12}),
    "audio/mpeg": ("mp3", 6_291_456, {"duration": 215.0}),
}


def new_asset_id() -> str:
    """A random asset id: 32 lower-case hex characters, as FileSpin issues them."""
    return uuid.uuid4().hex


def new_apikey() -> str:
    """A random (fake) FileSpin API key for a test user."""
    return "fsk_test_" + secrets.token_urlsafe(24)


def new_fernet_key() -> str:
    """A fresh Fernet key (what ``POSTPROCESS_APIKEY_KEYS`` holds)."""
    return Fernet.generate_key().decode()


def make_asset(
    content_type: str = "image/jpeg",
    *,
    asset_id: str | None = None,
    name: str | None = None,
    data: Mapping[str, Any] | None = None,
    data_schema_id: int | None = None,
    status: str = "OK",
    **overrides: Any,
) -> dict[str, Any]:
    """The JSON of ``GET /api/v1/assets/{id}/data`` for a plausible asset of ``content_type``."""
    asset_id = asset_id or new_asset_id()
    extension, size, metadata = _KINDS.get(content_type, ("bin", 65_536, {}))
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    asset: dict[str, Any] = {
        "id": asset_id,
        "status": status,
        "name": name or f"{asset_id[:8]}.{extension}",
        "size": size,
        "checksum": hashlib.md5(asset_id.encode(), usedforsecurity=False).hexdigest(),
        "content_type": content_type,
        "creator_id": "user-0001",
        "upload_time": now,
        "update_time": now,
        "data_schema_id": data_schema_id,
        "metadata": dict(metadata),
        "data": dict(data or {}),
        "conversions": {"thumbnail": {"width": 320, "height": 240}} if content_type.startswith("image/") else {},
        "addons_info": {},
    }
    asset.update(overrides)
    return asset


def image_asset(**fields: Any) -> dict[str, Any]:
    """A JPEG image asset (see :func:`make_asset` for the fields)."""
    return make_asset(fields.pop("content_type", "image/jpeg"), **fields)


def video_asset(**fields: Any) -> dict[str, Any]:
    """An MP4 video asset."""
    return make_asset(fields.pop("content_type", "video/mp4"), **fields)


def document_asset(**fields: Any) -> dict[str, Any]:
    """A PDF document asset."""
    return make_asset(fields.pop("content_type", "application/pdf"), **fields)


def hook(
    content_types: Sequence[str] = ("image/*",),
    *,
    enabled: bool = True,
    schema_criteria: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One event hook: ``{"enabled", "content_types", ["schema_criteria"]}``."""
    block: dict[str, Any] = {"enabled": enabled, "content_types": list(content_types)}
    if schema_criteria is not None:
        block["schema_criteria"] = dict(schema_criteria)
    return block


def addon(
    key: str,
    *,
    hooks: Mapping[str, Mapping[str, Any]] | None = None,
    events: Iterable[str] = (),
    content_types: Sequence[str] = ("image/*",),
    added: bool = True,
    enabled: bool = True,
    disposition: Mapping[str, Any] | None = None,
    hooks_key: str = "event-hooks",
) -> tuple[str, dict[str, Any]]:
    """One addon block of the user settings, as ``(key, block)``.

    ``hooks`` gives each event's hook; ``events`` is a shortcut for enabled hooks on ``content_types``.
    ``hooks_key`` picks FileSpin's spelling (``event-hooks`` or ``event_hooks``).
    """
    all_hooks: dict[str, Any] = {event: hook(content_types) for event in events}
    all_hooks.update({event: dict(block) for event, block in (hooks or {}).items()})
    title, description = _TITLES.get(key, (key.replace("_", " ").title(), f"The {key} addon."))
    settings: dict[str, Any] = {hooks_key: all_hooks}
    settings["disposition"] = (
        dict(disposition)
        if disposition is not None
        else {"update_metadata": True, "confidence_threshold": 0.5, "pass_through_fields": []}
    )
    return key, {"title": title, "description": description, "added": added, "enabled": enabled, "settings": settings}


def user_settings(*addons: tuple[str, dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """The ``data`` object of ``GET /api/v1/user/settings`` holding the given addon blocks."""
    return {"username": "test-user", "timezone": "UTC", **extra, "addons": dict(addons)}


def all_builtin_addons(
    events: Iterable[str] = ("file-saved",), content_types: Sequence[str] = ("image/*",)
) -> dict[str, Any]:
    """Settings with the three built-in addons added, enabled and hooked to ``events`` for ``content_types``."""
    event_list = list(events)
    return user_settings(*(addon(key, events=event_list, content_types=content_types) for key in BUILTIN_ADDONS))


class MessageFactory:
    """Builds valid ``process_asset`` messages with common's :class:`EventProducer` (key encrypted, validated)."""

    def __init__(self, fernet_keys: Sequence[str]) -> None:
        self.cipher = ApiKeyCipher(list(fernet_keys))
        # build_message never touches the broker: an unconnected app is enough.
        self._producer = EventProducer(Celery("devkit-message-factory", set_as_current=False), self.cipher, "-")

    def build(
        self,
        *,
        apikey: str,
        asset_id: str,
        event_type: str,
        addons: list[str] | None = None,
        force_processing: bool = False,
        asset_data: dict[str, Any] | None = None,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        """A validated message (with ``event_id`` filled in); raises ``ValidationError`` for invalid fields."""
        return self._producer.build_message(
            apikey=apikey,
            asset_id=asset_id,
            event_type=event_type,
            addons=addons,
            force_processing=force_processing,
            asset_data=asset_data,
            event_id=event_id,
        )

    def file_saved(self, apikey: str, asset: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
        """A ``file-saved`` message for ``asset``."""
        return self.build(apikey=apikey, asset_id=str(asset["id"]), event_type="file-saved", **fields)

    def file_data_updated(self, apikey: str, asset: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
        """A ``file-data-updated`` message for ``asset``."""
        return self.build(apikey=apikey, asset_id=str(asset["id"]), event_type="file-data-updated", **fields)

    def file_deleted(self, apikey: str, asset: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
        """A ``file-deleted`` message carrying the asset's JSON (the asset may be gone when it is read)."""
        return self.build(
            apikey=apikey, asset_id=str(asset["id"]), event_type="file-deleted", asset_data=dict(asset), **fields
        )


@dataclass
class Account:
    """A test user: key, settings and assets, ready to load into the simulator."""

    apikey: str = field(default_factory=new_apikey)
    settings: dict[str, Any] = field(default_factory=all_builtin_addons)
    assets: list[dict[str, Any]] = field(default_factory=list)

    def add(self, asset: dict[str, Any]) -> dict[str, Any]:
        """Add an asset to the account; returns it."""
        self.assets.append(asset)
        return asset

    def load_into(self, simulator: Any) -> Account:
        """Put the user and every asset into a :class:`~asset_post_process.devkit.simulator.SimulatorClient`."""
        simulator.put_user(self.apikey, self.settings)
        for asset in self.assets:
            simulator.put_asset(self.apikey, asset)
        return self
