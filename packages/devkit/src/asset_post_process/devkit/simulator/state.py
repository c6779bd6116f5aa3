"""The simulator's memory: users, assets, scripted answers, addon defaults and outages, recorded calls.

Plain synchronous code; the ASGI app touches it from its one event loop only, so no lock is needed.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from asset_post_process.devkit.simulator.models import ADDON_PREFIX, FACE_DELETE, DownMode, Step, addon_name

#: The reserved custom-data field (and a plausible value) FileSpin writes when an addon succeeds.
ADDON_MARKS: dict[str, tuple[str, Any]] = {
    "face_recognition": ("_filespin_fr_count", 1),
    "scene_classification": ("_filespin_scene_labels", ["outdoor", "sky"]),
    "emotion_recognition": ("_filespin_emotion_labels", ["happy"]),
}

ANY = "*"


@dataclass
class AddonDefault:
    """How an addon answers when no script applies: ``status`` (202 or ``async_job`` adds a ``job_id``)."""

    status: int = 200
    async_job: bool = False
    latency: float | None = None
    body: Any = None


@dataclass
class SimulatorState:
    """Everything the simulator knows; :meth:`reset` forgets it all."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    assets: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    scripts: dict[tuple[str, str], deque[Step]] = field(default_factory=dict)
    addon_defaults: dict[str, AddonDefault] = field(default_factory=dict)
    down: dict[str, DownMode] = field(default_factory=dict)
    api_latency: float = 0.0
    mark_processed: bool = True
    hang_limit: float = 120.0
    calls: list[dict[str, Any]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def reset(self) -> None:
        """Forget users, assets, scripts, defaults, outages and calls."""
        fresh = SimulatorState()
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))

    # users and assets
    def put_user(self, apikey: str, settings: dict[str, Any]) -> None:
        """Add or replace the user whose key is ``apikey``; ``settings`` is the ``data`` of the settings answer."""
        self.users[apikey] = copy.deepcopy(settings)

    def put_asset(self, owner: str, asset: dict[str, Any]) -> None:
        """Add or replace an asset (its ``id`` field) owned by the user with key ``owner``."""
        self.assets[str(asset["id"])] = (owner, copy.deepcopy(asset))

    def owned_asset(self, apikey: str, asset_id: str) -> dict[str, Any] | None:
        """The asset when it exists and belongs to ``apikey``'s user."""
        found = self.assets.get(asset_id)
        if found is None or found[0] != apikey:
            return None
        return found[1]

    def mark(self, asset: dict[str, Any], addon: str) -> None:
        """Write what FileSpin writes on an addon's success: its reserved field and an ``addons_info`` entry."""
        if not self.mark_processed:
            return
        marker = ADDON_MARKS.get(addon)
        if marker is not None:
            field_name, value = marker
            data = asset.get("data")
            if not isinstance(data, dict):
                data = asset["data"] = {}
            data[field_name] = copy.deepcopy(value)
        info = asset.get("addons_info")
        if not isinstance(info, dict):
            info = asset["addons_info"] = {}
        info[addon.upper()] = {"status": "OK", "processed_at": time.time()}

    def unmark_faces(self, owner: str, asset_ids: Iterable[str]) -> None:
        """Drop face-recognition output of the given assets (what the face data delete does)."""
        for asset_id in asset_ids:
            asset = self.owned_asset(owner, asset_id)
            if asset is not None and isinstance(asset.get("data"), dict):
                asset["data"].pop("_filespin_fr_count", None)

    # scripts, defaults and outages
    def add_script(self, endpoint: str, scope: str, steps: Iterable[Step]) -> None:
        """Queue ``steps`` for ``endpoint`` within ``scope`` (an asset id, an API key for settings, or ``*``)."""
        self.scripts.setdefault((endpoint, scope), deque()).extend(steps)

    def next_step(self, endpoint: str, scopes: Iterable[str]) -> Step | None:
        """Pop the next scripted step for ``endpoint``: the first matching scope wins, then ``*``."""
        for scope in (*scopes, ANY):
            queue = self.scripts.get((endpoint, scope))
            if queue:
                step = queue.popleft()
                if not queue:
                    del self.scripts[(endpoint, scope)]
                return step
        return None

    def addon_default(self, addon: str) -> AddonDefault:
        """The addon's default answer (its own, else the ``*`` one, else 200)."""
        return self.addon_defaults.get(addon) or self.addon_defaults.get(ANY) or AddonDefault()

    def set_addon_default(self, addon: str, default: AddonDefault) -> None:
        """Set how ``addon`` (or ``*``: every addon) answers when unscripted."""
        self.addon_defaults[addon if addon == ANY else addon_name(addon)] = default

    def down_mode(self, addon: str) -> DownMode | None:
        """How the addon fails while it is down, or ``None`` when it is up."""
        return self.down.get(addon) or self.down.get(ANY)

    # calls
    def record(
        self,
        *,
        method: str,
        path: str,
        endpoint: str,
        asset_id: str | None,
        headers: dict[str, str],
        body: Any,
    ) -> dict[str, Any]:
        """Record a call on arrival; the caller fills ``status`` and ``outcome`` when it answers."""
        call: dict[str, Any] = {
            "seq": next(self._seq),
            "method": method,
            "path": path,
            "endpoint": endpoint,
            "asset_id": asset_id,
            "addon": endpoint.removeprefix(ADDON_PREFIX) if endpoint.startswith(ADDON_PREFIX) else None,
            "headers": headers,
            "json": body,
            "time": time.time(),
            "status": None,
            "outcome": "pending",
        }
        self.calls.append(call)
        return call

    def select_calls(
        self,
        *,
        asset_id: str | None = None,
        addon: str | None = None,
        endpoint: str | None = None,
        path: str | None = None,
        method: str | None = None,
        since_seq: int = 0,
    ) -> list[dict[str, Any]]:
        """Recorded calls matching every given filter, oldest first."""
        wanted_addon = addon_name(addon) if addon else None
        return [
            call
            for call in self.calls
            if call["seq"] > since_seq
            and (asset_id is None or asset_id in _call_asset_ids(call))
            and (wanted_addon is None or call["addon"] == wanted_addon)
            and (endpoint is None or call["endpoint"] == endpoint)
            and (path is None or call["path"] == path)
            and (method is None or call["method"] == method.upper())
        ]


def _call_asset_ids(call: dict[str, Any]) -> list[str]:
    """The assets a call is about: its path's asset, or the ids of a face data delete."""
    if call["endpoint"] == FACE_DELETE and isinstance(call["json"], dict):
        ids = call["json"].get("ids")
        return [str(i) for i in ids] if isinstance(ids, list) else []
    return [call["asset_id"]] if call["asset_id"] else []
