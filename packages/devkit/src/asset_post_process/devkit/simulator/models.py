"""What the simulator's control plane exchanges: scripted steps and recorded calls."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

#: The FileSpin endpoints the simulator serves, as named in scripts and recorded calls.
SETTINGS = "settings"
ASSET_DATA = "asset_data"
FACE_DELETE = "face_delete"
ADDON_PREFIX = "addon:"

StepAction = Literal["answer", "hang", "close"]
DownMode = Literal["503", "hang", "close"]


def addon_name(addon: str) -> str:
    """The addon's path segment: ``FACE_RECOGNITION`` or ``face_recognition`` -> ``face_recognition``."""
    return addon.strip().lower()


def addon_endpoint(addon: str) -> str:
    """The endpoint label of an addon's process call (``addon:face_recognition``)."""
    return ADDON_PREFIX + addon_name(addon)


@dataclass(frozen=True)
class Step:
    """One scripted answer.

    ``action="answer"``: after ``latency`` seconds, answer ``status``; a 2xx status without ``body`` gives the
    endpoint's normal answer (the asset JSON, the settings, an addon's result), any other status answers
    ``body`` (or a FileSpin-shaped error). ``"hang"``: hold the request (until ``latency``, or the simulator's
    hang limit when 0) and answer 504. ``"close"``: drop the connection without a complete answer.
    """

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    latency: float = 0.0
    action: StepAction = "answer"

    def to_json(self) -> dict[str, Any]:
        """The step as JSON for the control plane."""
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Step:
        """A step from its JSON form."""
        return cls(
            status=int(raw.get("status", 200)),
            body=raw.get("body"),
            headers={str(k): str(v) for k, v in (raw.get("headers") or {}).items()},
            latency=float(raw.get("latency", 0.0)),
            action=raw.get("action", "answer"),
        )


@dataclass(frozen=True)
class RecordedCall:
    """One request the simulator received, with what it answered.

    ``headers`` keeps every request header (names lower-cased), the API key included, so tests can check
    what the service sent; the simulator itself never logs them.
    """

    seq: int
    method: str
    path: str
    endpoint: str
    asset_id: str | None
    addon: str | None
    headers: dict[str, str]
    json: Any
    time: float
    status: int | None
    outcome: str

    def header(self, name: str) -> str | None:
        """A request header, by case-insensitive name."""
        return self.headers.get(name.lower())

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RecordedCall:
        """A recorded call from its JSON form."""
        return cls(
            seq=int(raw["seq"]),
            method=str(raw["method"]),
            path=str(raw["path"]),
            endpoint=str(raw["endpoint"]),
            asset_id=raw.get("asset_id"),
            addon=raw.get("addon"),
            headers=dict(raw.get("headers") or {}),
            json=raw.get("json"),
            time=float(raw["time"]),
            status=raw.get("status"),
            outcome=str(raw.get("outcome", "")),
        )
