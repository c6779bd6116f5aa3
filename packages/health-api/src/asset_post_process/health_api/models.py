"""The JSON bodies of the health API (they shape the committed OpenAPI schema)."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, model_validator

from asset_post_process.common.contract import ADDON_KEY_PATTERN
from asset_post_process.common.deadletters import DeadLetter, DeadLetterFilter

#: Dead-letter ids are uuid4 hex strings.
DEAD_LETTER_ID_PATTERN = r"^[0-9a-f]{32}$"
REASON_CODE_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
TASK_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"


class Problem(BaseModel):
    """An error."""

    detail: str


class CheckResult(BaseModel):
    """One health check."""

    ok: bool
    detail: str
    live: int | None = Field(default=None, description="Live worker nodes (heartbeat checks only).")


class HealthReport(BaseModel):
    """The health of the service as this replica sees it."""

    status: Literal["ok", "unhealthy"]
    failed: list[str] = Field(description="Names of the failed checks; empty when healthy.")
    checks: dict[str, CheckResult]


class Liveness(BaseModel):
    """The process answers."""

    status: Literal["ok"] = "ok"


class DelayedFigures(BaseModel):
    """Messages waiting for a retry."""

    total: int
    due: int = Field(description="Already due; a growing number means the retry pumps lag.")


class QueuesReport(BaseModel):
    """Queue, worker and dead-letter figures, cluster-wide."""

    queues: dict[str, int] = Field(description="Queue name -> messages waiting.")
    unacked: int = Field(description="Messages delivered to a worker and not yet acknowledged.")
    delayed: DelayedFigures
    dead_letters: int
    workers: dict[str, list[str]] = Field(description="Worker kind -> nodes with a fresh heartbeat.")
    outcomes: dict[str, dict[str, int]] = Field(description="Addon -> outcome -> count.")


class DeadLetterSummary(BaseModel):
    """A dead letter without its message."""

    id: str
    task: str
    queue: str
    reason_code: str
    reason: str
    attempts: int
    event_id: str | None
    asset_id: str | None
    addon: str | None
    status_code: int | None
    failed_at: float = Field(description="Unix time of the failure.")
    age_seconds: float
    replayable: bool

    @classmethod
    def of(cls, letter: DeadLetter, now: float | None = None) -> DeadLetterSummary:
        """The summary of ``letter``."""
        return cls(**_summary_fields(letter, now))


class DeadLetterDetail(DeadLetterSummary):
    """A dead letter with its message (the API key in it is still encrypted)."""

    message: Any

    @classmethod
    def of(cls, letter: DeadLetter, now: float | None = None) -> DeadLetterDetail:
        """The detail of ``letter``."""
        return cls(**_summary_fields(letter, now), message=letter.message)


def _summary_fields(letter: DeadLetter, now: float | None) -> dict[str, Any]:
    now = time.time() if now is None else now
    return {
        "id": letter.id,
        "task": letter.task,
        "queue": letter.queue,
        "reason_code": letter.reason_code,
        "reason": letter.reason,
        "attempts": letter.attempts,
        "event_id": letter.event_id,
        "asset_id": letter.asset_id,
        "addon": letter.addon,
        "status_code": letter.status_code,
        "failed_at": letter.failed_at,
        "age_seconds": max(0.0, now - letter.failed_at),
        "replayable": letter.replayable,
    }


class DeadLetterList(BaseModel):
    """Dead letters matching a filter, newest first."""

    total: int = Field(description="Dead letters stored, matching or not.")
    count: int = Field(description="Items returned.")
    items: list[DeadLetterSummary]


DeadLetterId = Annotated[str, StringConstraints(pattern=DEAD_LETTER_ID_PATTERN)]

#: What the model validator enforces, said in the schema too: ids, a filter field, or all=true.
_FILTER_TYPES = (
    ("ids", "array"),
    ("addon", "string"),
    ("reason_code", "string"),
    ("task", "string"),
    ("older_than", "number"),
    ("newer_than", "number"),
)


def _required(name: str, kind: str) -> JsonValue:
    return {"required": [name], "properties": {name: {"type": kind}}}


_SELECTS_SOMETHING: list[JsonValue] = [
    *(_required(name, kind) for name, kind in _FILTER_TYPES),
    {"required": ["all"], "properties": {"all": {"const": True}}},
]


class DeadLetterQuery(BaseModel):
    """Filters of the dead-letter routes; every given one must hold. Unknown parameters are refused."""

    model_config = ConfigDict(extra="forbid")

    addon: str | None = Field(default=None, pattern=ADDON_KEY_PATTERN, description="Addon key, e.g. FACE_RECOGNITION.")
    reason_code: str | None = Field(
        default=None, pattern=REASON_CODE_PATTERN, description="Reason code, e.g. http_403."
    )
    task: str | None = Field(default=None, pattern=TASK_PATTERN, description="process_asset or trigger_addon.")
    older_than: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="Only letters at least this many seconds old."
    )
    newer_than: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="Only letters at most this many seconds old."
    )

    def filter(self) -> DeadLetterFilter:
        """The store's filter for these parameters."""
        return DeadLetterFilter(
            addon=self.addon,
            reason_code=self.reason_code,
            task=self.task,
            older_than_seconds=self.older_than,
            newer_than_seconds=self.newer_than,
        )


class ListQuery(DeadLetterQuery):
    """Filters of ``GET /dead-letters`` and how many letters to return."""

    limit: int = Field(default=100, ge=1, le=1000)


class PurgeQuery(DeadLetterQuery):
    """Filters of ``DELETE /dead-letters``; with none, ``all=true`` is required."""

    all: bool = Field(default=False, description="Purge every dead letter (required when no filter is given).")


class Selection(DeadLetterQuery):
    """Which dead letters a replay acts on: ``ids``, or a filter, or ``all``; at least one of them."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"anyOf": _SELECTS_SOMETHING})

    ids: list[DeadLetterId] | None = Field(
        default=None, max_length=1000, description="Replay these letters (the filters are then ignored)."
    )
    all: bool = Field(default=False, description="Act on every dead letter (required when nothing else selects).")

    @model_validator(mode="after")
    def _something_selected(self) -> Selection:
        if not self.all and self.ids is None and self.filter() == DeadLetterFilter():
            raise ValueError("select dead letters with ids, a filter, or all=true")
        return self


class ReplayResult(BaseModel):
    """How many dead letters went back on their queue."""

    replayed: int


class PurgeResult(BaseModel):
    """How many dead letters were deleted."""

    purged: int
