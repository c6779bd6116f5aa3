"""Smoke: one event through the whole running service, seen at the FileSpin simulator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from asset_post_process.common.producer import EventProducer
from asset_post_process.devkit import factory
from asset_post_process.devkit.launcher import ServiceStack
from asset_post_process.devkit.simulator import RecordedCall, SimulatorClient

ADDON_PATHS = {
    "FACE_RECOGNITION": "face_recognition",
    "SCENE_CLASSIFICATION": "scene_classification",
    "EMOTION_RECOGNITION": "emotion_recognition",
}


def test_file_saved_image_calls_each_enabled_addon_once(
    service: ServiceStack,
    producer: EventProducer,
    sim: SimulatorClient,
    new_account: Callable[..., factory.Account],
    wait_until: Callable[..., Any],
) -> None:
    asset = factory.image_asset()
    account = new_account(factory.all_builtin_addons(events=["file-saved"], content_types=["image/*"]), [asset])

    event_id = producer.enqueue_asset_event(apikey=account.apikey, asset_id=asset["id"], event_type="file-saved")

    def entry() -> dict[str, Any] | None:
        entries = [e for e in service.decisions().latest(asset["id"]) if e.get("event_id") == event_id]
        return entries[0] if entries else None

    decided = wait_until(entry, timeout=30, message=lambda: f"decision log of {asset['id']}")
    assert decided["outcome"] == "planned"
    assert {d["addon"]: d["run"] for d in decided["decisions"]} == dict.fromkeys(ADDON_PATHS, True)

    def all_addons_called() -> list[RecordedCall]:
        calls = sim.calls(asset_id=asset["id"])
        return calls if len([c for c in calls if c.addon is not None and c.status is not None]) >= 3 else []

    calls = wait_until(
        all_addons_called,
        timeout=30,
        message=lambda: f"addon calls for {asset['id']}: {[c.path for c in sim.calls(asset_id=asset['id'])]}",
    )
    addon_calls = [c for c in calls if c.addon is not None]
    assert sorted(c.path for c in addon_calls) == sorted(
        f"/api/v1/assets/{asset['id']}/addons/{name}" for name in ADDON_PATHS.values()
    )
    for call in addon_calls:
        assert call.method == "POST"
        assert call.status == 200
        assert call.header("X-FileSpin-Api-Key") == account.apikey
        assert call.header("X-FileSpin-Internal-Request") == "true"
        assert isinstance(call.json, dict)
        assert call.json.get("disposition", {}).get("confidence_threshold") == 0.5
    # The asset's data was read once; nothing else was called for it.
    assert [c.endpoint for c in calls if c.addon is None] == ["asset_data"]
    assert sim.count(endpoint="settings") == 1

    # FileSpin marked the asset as processed by each addon.
    stored = sim.get_asset(asset["id"])
    assert stored is not None
    assert {"_filespin_fr_count", "_filespin_scene_labels", "_filespin_emotion_labels"} <= set(stored["data"])

    # No log line of any program holds the plaintext key.
    for program, text in service.read_logs().items():
        assert account.apikey not in text, f"{program} logged the API key"


def test_health_api_reports_healthy(service: ServiceStack, wait_until: Callable[..., Any]) -> None:
    def healthy() -> httpx.Response | None:
        response = httpx.get(f"{service.api_url}/healthcheck", timeout=5)
        return response if response.status_code == 200 else None

    response = wait_until(healthy, timeout=20, message="/healthcheck answering 200")
    assert response.json()["status"] == "ok"
