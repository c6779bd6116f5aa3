"""The request builder: URL, body and the permanent failures of a job the registry cannot serve."""

from __future__ import annotations

from typing import Any

import pytest

from asset_post_process.common.contract import Action, TriggerJob
from asset_post_process.common.registry import AddonRegistry
from asset_post_process.trigger_worker.request import PermanentJobError, build_request

ASSET = "0123456789abcdef0123456789abcdef"
API = "https://api.example.test"


def job(addon: str = "SCENE_CLASSIFICATION", action: str = "process", **extra: Any) -> TriggerJob:
    return TriggerJob.model_validate(
        {
            "job_id": f"e1:{addon}",
            "event_id": "e1",
            "asset_id": ASSET,
            "addon": addon,
            "action": action,
            "apikey": "gAAAAA-not-decrypted-here",
            "disposition": {"update_metadata": True, "confidence_threshold": 0.5},
            **extra,
        }
    )


def test_process_call_posts_the_disposition_to_the_addon_endpoint() -> None:
    request = build_request(job(), AddonRegistry.build(API))
    assert request.url == f"{API}/api/v1/assets/{ASSET}/addons/scene_classification"
    assert request.body == {"disposition": {"update_metadata": True, "confidence_threshold": 0.5}}
    assert request.action is Action.PROCESS
    assert request.ids == ()


def test_an_addon_served_apart_uses_its_own_base_url() -> None:
    registry = AddonRegistry.build(API, base_urls={"EMOTION_RECOGNITION": "http://emotions.internal:8080/"})
    request = build_request(job("EMOTION_RECOGNITION"), registry)
    assert request.url == f"http://emotions.internal:8080/api/v1/assets/{ASSET}/addons/emotion_recognition"


def test_face_data_delete_sends_the_asset_id() -> None:
    request = build_request(job("FACE_RECOGNITION", "delete"), AddonRegistry.build(API))
    assert request.url == f"{API}/api/v1/assets/addons/face_recognition/delete"
    assert request.body == {"ids": [ASSET]}
    assert request.ids == (ASSET,)
    assert "disposition" not in request.body


def test_an_addon_added_by_configuration_is_callable() -> None:
    registry = AddonRegistry.build(API, {"BG_REMOVE": {"path": "/api/v1/assets/{asset_id}/addons/bg_remove"}})
    assert build_request(job("BG_REMOVE"), registry).url == f"{API}/api/v1/assets/{ASSET}/addons/bg_remove"


def test_an_unknown_addon_is_permanent() -> None:
    with pytest.raises(PermanentJobError) as caught:
        build_request(job("STORYBOARD"), AddonRegistry.build(API))
    assert caught.value.reason_code == "unknown_addon"
    assert "STORYBOARD" in caught.value.reason


def test_a_delete_for_an_addon_without_one_is_permanent() -> None:
    with pytest.raises(PermanentJobError) as caught:
        build_request(job("SCENE_CLASSIFICATION", "delete"), AddonRegistry.build(API))
    assert caught.value.reason_code == "no_delete_action"
