"""A typed client of the simulator's control plane (``/_sim/``), the same in-thread or in another process."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpx

from asset_post_process.devkit.simulator.models import (
    ASSET_DATA,
    FACE_DELETE,
    SETTINGS,
    DownMode,
    RecordedCall,
    Step,
    addon_endpoint,
    addon_name,
)


class SimulatorClient:
    """Loads the simulator with users and assets, scripts its answers and reads back the calls it received."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=f"{self.base_url}/_sim", timeout=timeout)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def __enter__(self) -> SimulatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        response = self._http.request(method, path, json=json, params=params)
        if response.status_code >= 400:
            raise RuntimeError(f"simulator control plane {method} {path}: HTTP {response.status_code} {response.text}")
        return response.json()

    # ------------------------------------------------------------------ state
    def health(self) -> bool:
        """Whether the simulator answers."""
        try:
            return self._http.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def reset(self) -> None:
        """Forget users, assets, scripts, addon defaults, outages and recorded calls."""
        self._call("POST", "/reset")

    def put_user(self, apikey: str, settings: dict[str, Any]) -> None:
        """Add or replace a user: ``settings`` is the ``data`` object of ``GET /api/v1/user/settings``."""
        self._call("PUT", "/users", {"apikey": apikey, "settings": settings})

    def remove_user(self, apikey: str) -> None:
        """Forget a user: its key gets 401 from now on."""
        self._call("POST", "/users/remove", {"apikey": apikey})

    def put_asset(self, apikey: str, asset: dict[str, Any]) -> None:
        """Add or replace an asset (keyed by its ``id``) owned by the user with key ``apikey``."""
        self._call("PUT", "/assets", {"apikey": apikey, "asset": asset})

    def get_asset(self, asset_id: str) -> dict[str, Any] | None:
        """The asset as the simulator holds it now (with the markers addons wrote), or ``None``."""
        response = self._http.get(f"/assets/{asset_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        asset: dict[str, Any] = response.json()
        return asset

    def delete_asset(self, asset_id: str) -> None:
        """Forget an asset (its data then answers 404)."""
        self._call("DELETE", f"/assets/{asset_id}")

    # ------------------------------------------------------------------ scripted answers
    def script(self, endpoint: str, steps: Iterable[Step], *, scope: str = "*") -> None:
        """Queue ``steps`` for ``endpoint`` (``settings``, ``asset_data``, ``face_delete``, ``addon:<name>``).

        ``scope`` narrows the script to an asset id (asset endpoints, or an id in a face delete's ``ids``) or an
        API key (settings); ``*`` applies to any call. Once the steps are used up the default answer applies.
        """
        self._call("POST", "/scripts", {"endpoint": endpoint, "scope": scope, "steps": [s.to_json() for s in steps]})

    def script_addon(self, asset_id: str, addon: str, *steps: Step) -> None:
        """Script an addon's answers for one asset (``addon``: ``FACE_RECOGNITION`` or ``face_recognition``)."""
        self.script(addon_endpoint(addon), steps, scope=asset_id)

    def script_settings(self, *steps: Step, apikey: str | None = None) -> None:
        """Script ``GET /api/v1/user/settings`` answers (for one key, or any)."""
        self.script(SETTINGS, steps, scope=apikey or "*")

    def script_asset_data(self, *steps: Step, asset_id: str | None = None) -> None:
        """Script ``GET /api/v1/assets/{id}/data`` answers (for one asset, or any)."""
        self.script(ASSET_DATA, steps, scope=asset_id or "*")

    def script_face_delete(self, *steps: Step, asset_id: str | None = None) -> None:
        """Script the face data delete's answers (for calls naming ``asset_id``, or any)."""
        self.script(FACE_DELETE, steps, scope=asset_id or "*")

    def clear_scripts(self) -> None:
        """Drop every unused scripted step."""
        self._call("DELETE", "/scripts")

    def set_addon_default(
        self, addon: str, *, status: int = 200, async_job: bool = False, latency: float | None = None, body: Any = None
    ) -> None:
        """How ``addon`` (or ``*``: every addon) answers when unscripted; ``latency`` in seconds (benchmarks)."""
        self._call(
            "PUT",
            f"/addons/{addon if addon == '*' else addon_name(addon)}/default",
            {"status": status, "async_job": async_job, "latency": latency, "body": body},
        )

    def addon_down(self, addon: str, mode: DownMode = "503") -> None:
        """Take an addon (or ``*``) down: answer 503, ``hang`` (hold calls until it is back up) or ``close``."""
        self._call("PUT", f"/addons/{addon if addon == '*' else addon_name(addon)}/down", {"mode": mode})

    def addon_up(self, addon: str) -> None:
        """Bring an addon (or ``*``) back."""
        self._call("DELETE", f"/addons/{addon if addon == '*' else addon_name(addon)}/down")

    def configure(
        self, *, api_latency: float | None = None, mark_processed: bool | None = None, hang_limit: float | None = None
    ) -> None:
        """Global knobs: latency of settings/data/unscripted calls, whether addon success marks the asset
        (FileSpin's reserved field, default on), and how long a hung call is held at most."""
        config: dict[str, Any] = {}
        if api_latency is not None:
            config["api_latency"] = api_latency
        if mark_processed is not None:
            config["mark_processed"] = mark_processed
        if hang_limit is not None:
            config["hang_limit"] = hang_limit
        self._call("PUT", "/config", config)

    # ------------------------------------------------------------------ recorded calls
    @staticmethod
    def _filters(
        asset_id: str | None, addon: str | None, endpoint: str | None, path: str | None, method: str | None, since: int
    ) -> dict[str, Any]:
        raw = {"asset_id": asset_id, "addon": addon, "endpoint": endpoint, "path": path, "method": method}
        filters: dict[str, Any] = {name: value for name, value in raw.items() if value}
        if since:
            filters["since_seq"] = since
        return filters

    def calls(
        self,
        *,
        asset_id: str | None = None,
        addon: str | None = None,
        endpoint: str | None = None,
        path: str | None = None,
        method: str | None = None,
        since: int = 0,
    ) -> list[RecordedCall]:
        """Calls received (oldest first) matching every given filter; ``since``: only calls after that ``seq``."""
        answer = self._call("GET", "/calls", params=self._filters(asset_id, addon, endpoint, path, method, since))
        return [RecordedCall.from_json(raw) for raw in answer["calls"]]

    def count(
        self,
        *,
        asset_id: str | None = None,
        addon: str | None = None,
        endpoint: str | None = None,
        path: str | None = None,
        method: str | None = None,
        since: int = 0,
    ) -> int:
        """How many calls match the filters."""
        answer = self._call("GET", "/counts", params=self._filters(asset_id, addon, endpoint, path, method, since))
        return int(answer["total"])

    def counts(self, *, asset_id: str | None = None, since: int = 0) -> dict[str, int]:
        """Calls per endpoint label (``settings``, ``asset_data``, ``addon:face_recognition`` ...)."""
        answer = self._call("GET", "/counts", params=self._filters(asset_id, None, None, None, None, since))
        return {str(k): int(v) for k, v in answer["by_endpoint"].items()}

    def last_seq(self) -> int:
        """The ``seq`` of the latest recorded call (0 when none): pass it as ``since`` to see only later calls."""
        calls = self._call("GET", "/calls")["calls"]
        return int(calls[-1]["seq"]) if calls else 0

    def clear_calls(self) -> None:
        """Forget the recorded calls."""
        self._call("DELETE", "/calls")

    def wait_for_calls(
        self,
        expected: int,
        *,
        timeout: float = 30.0,
        interval: float = 0.1,
        asset_id: str | None = None,
        addon: str | None = None,
        endpoint: str | None = None,
        since: int = 0,
    ) -> list[RecordedCall]:
        """Poll until at least ``expected`` matching calls were answered, or ``timeout``; returns them either way."""
        deadline = time.monotonic() + timeout
        while True:
            calls = [
                c
                for c in self.calls(asset_id=asset_id, addon=addon, endpoint=endpoint, since=since)
                if c.outcome != "pending"
            ]
            if len(calls) >= expected or time.monotonic() >= deadline:
                return calls
            time.sleep(interval)
