"""The message contract between the FileSpin backend, the process worker and the trigger worker.

Two pydantic models, each with a ``schema_version``; their JSON Schemas are committed under
``packages/common/schemas/`` so that producers in other languages can validate what they send.
Unknown fields are ignored, so a newer producer never breaks an older worker.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
    model_validator,
)

PROCESS_ASSET_TASK = "process_asset"
TRIGGER_ADDON_TASK = "trigger_addon"

EVENT_SCHEMA_VERSION = 1
JOB_SCHEMA_VERSION = 1

#: 32 hex characters, or 36 in the UUID form with dashes (FileSpin's docs show both).
ASSET_ID_PATTERN = r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
ADDON_KEY_PATTERN = r"^[A-Z][A-Z0-9_]{0,63}$"
EVENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"

MAX_ADDONS = 64
MAX_TOKEN_LENGTH = 4096

AssetId = Annotated[str, StringConstraints(pattern=ASSET_ID_PATTERN)]
AddonKey = Annotated[str, StringConstraints(pattern=ADDON_KEY_PATTERN)]
EventId = Annotated[str, StringConstraints(pattern=EVENT_ID_PATTERN)]
EncryptedApiKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TOKEN_LENGTH, strip_whitespace=True)]


class EventType(StrEnum):
    """Asset events the FileSpin backend sends."""

    FILE_SAVED = "file-saved"
    FILE_DATA_UPDATED = "file-data-updated"
    FILE_DELETED = "file-deleted"
    FILE_PROCESSED = "file-processed"
    FILE_UNDELETED = "file-undeleted"
    ADDON_PROCESSED = "addon-processed"


class Action(StrEnum):
    """What a trigger job asks of an addon."""

    PROCESS = "process"
    DELETE = "delete"


class AssetEvent(BaseModel):
    """The ``process_asset`` message: FileSpin's documented event, plus an optional ``event_id``."""

    model_config = ConfigDict(extra="ignore", frozen=True, title="process_asset message")

    schema_version: Literal[1] = Field(default=1, description="Contract version; absent means 1.")
    apikey: EncryptedApiKey = Field(repr=False, description="The user's API key as a Fernet token.")
    asset_id: AssetId
    event_type: EventType
    addons: list[AddonKey] = Field(
        default_factory=list,
        max_length=MAX_ADDONS,
        description="Addon keys to consider; empty or absent means every addon the user added and enabled.",
    )
    force_processing: StrictBool = False
    asset_data: dict[str, Any] | None = Field(
        default=None, description="The asset JSON; required for file-deleted (the asset may be purged)."
    )
    event_id: EventId | None = Field(
        default=None, description="Producer's id for the event; derived from the message when absent."
    )

    @field_validator("addons", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return [] if value is None else value

    @field_validator("addons")
    @classmethod
    def _dedupe(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _deleted_needs_asset_data(self) -> AssetEvent:
        if self.event_type is EventType.FILE_DELETED and not self.asset_data:
            raise ValueError("asset_data is required for file-deleted events")
        return self

    @property
    def effective_event_id(self) -> str:
        """``event_id`` when the producer sent one, else an id derived from the message itself.

        The derived id is a digest of the message's fields, so a redelivery of the same message gets the
        same id; the encrypted key carries a random IV, so two separate events never share one.
        """
        if self.event_id:
            return self.event_id
        canonical = json.dumps(
            self.model_dump(mode="json", exclude={"event_id"}), sort_keys=True, separators=(",", ":")
        )
        return "d-" + hashlib.sha256(canonical.encode()).hexdigest()[:32]

    def to_message(self) -> dict[str, Any]:
        """The JSON-ready message, with ``event_id`` filled in."""
        message = self.model_dump(mode="json")
        message["event_id"] = self.effective_event_id
        return message


class TriggerJob(BaseModel):
    """The ``trigger_addon`` message: one addon to call for one asset event."""

    model_config = ConfigDict(extra="ignore", frozen=True, title="trigger_addon message")

    schema_version: Literal[1] = Field(default=1, description="Contract version; absent means 1.")
    job_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    event_id: EventId
    asset_id: AssetId
    addon: AddonKey
    action: Action
    apikey: EncryptedApiKey = Field(repr=False, description="Still encrypted: decrypted only in the worker.")
    disposition: dict[str, Any] = Field(default_factory=dict)
    force_processing: StrictBool = False
    event_type: EventType | None = None
    enqueued_at: float | None = Field(default=None, description="Unix time the job was dispatched.")

    @staticmethod
    def make_job_id(event_id: str, addon: str) -> str:
        """The deterministic job id of (event, addon): the same pair always gets the same id."""
        return f"{event_id}:{addon}"


def event_json_schema() -> dict[str, Any]:
    """JSON Schema of the ``process_asset`` message."""
    return AssetEvent.model_json_schema(mode="validation")


def job_json_schema() -> dict[str, Any]:
    """JSON Schema of the ``trigger_addon`` message."""
    return TriggerJob.model_json_schema(mode="validation")


SCHEMAS = {"process_asset.json": event_json_schema, "trigger_addon.json": job_json_schema}


def render_schema(name: str) -> str:
    """The committed text of schema file ``name`` (stable key order, trailing newline)."""
    return json.dumps(SCHEMAS[name](), indent=2, sort_keys=True) + "\n"


def write_schemas(directory: Path) -> list[Path]:
    """Write every JSON Schema into ``directory``; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SCHEMAS:
        path = directory / name
        path.write_text(render_schema(name), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # python -m asset_post_process.common.contract packages/common/schemas
    import sys

    for path in write_schemas(Path(sys.argv[1] if len(sys.argv) > 1 else "packages/common/schemas")):
        print(path)
