"""The FileSpin simulator over real HTTP on 127.0.0.1, driven by its control-plane client.

Most calls go through common's real ``FileSpinClient``, so these tests also show the simulator speaks what the
service expects.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from asset_post_process.common.crypto import PlainApiKey
from asset_post_process.common.filespin import FileSpinClient, FileSpinError
from asset_post_process.devkit.simulator import FACE_DELETE, SimulatorClient, Step, run_simulator

KEY = "sim-test-key-0001"
OTHER_KEY = "sim-test-key-0002"


def _asset(content_type: str = "image/jpeg", **data: Any) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "status": "OK",
        "name": "photo.jpg",
        "size": 1234,
        "content_type": content_type,
        "data_schema_id": 1,
        "metadata": {"width": 640, "height": 480},
        "data": dict(data),
        "conversions": {},
        "addons_info": {},
    }


SETTINGS_DATA = {"addons": {"FACE_RECOGNITION": {"added": True, "enabled": True, "settings": {"event-hooks": {}}}}}


@pytest.fixture(scope="module")
def running() -> Iterator[SimulatorClient]:
    with run_simulator() as sim:
        yield sim


@pytest.fixture
def sim(running: SimulatorClient) -> SimulatorClient:
    running.reset()
    running.put_user(KEY, SETTINGS_DATA)
    running.put_user(OTHER_KEY, {"addons": {}})
    return running


@pytest.fixture
def api(sim: SimulatorClient) -> Iterator[FileSpinClient]:
    client = FileSpinClient(sim.base_url, read_timeout=5.0)
    yield client
    client.close()


def _url(sim: SimulatorClient, asset_id: str, addon: str) -> str:
    return f"{sim.base_url}/api/v1/assets/{asset_id}/addons/{addon}"


def test_settings_answer_and_auth(sim: SimulatorClient, api: FileSpinClient) -> None:
    payload = api.get_user_settings_payload(PlainApiKey(KEY))
    assert payload == {"status": "OK", "data": SETTINGS_DATA}
    assert "FACE_RECOGNITION" in api.get_user_settings(PlainApiKey(KEY)).addons

    with pytest.raises(FileSpinError) as unknown:
        api.get_user_settings_payload(PlainApiKey("not-a-known-key"))
    assert unknown.value.status_code == 401
    assert not unknown.value.transient
    assert httpx.get(f"{sim.base_url}/api/v1/user/settings").status_code == 401


def test_asset_data_is_only_served_to_its_owner(sim: SimulatorClient, api: FileSpinClient) -> None:
    asset = _asset()
    sim.put_asset(KEY, asset)
    data = api.get_asset_data(PlainApiKey(KEY), asset["id"])
    assert data.id == asset["id"]
    assert data.content_type == "image/jpeg"
    for key, asset_id in ((OTHER_KEY, asset["id"]), (KEY, uuid.uuid4().hex)):
        with pytest.raises(FileSpinError) as missing:
            api.get_asset_data(PlainApiKey(key), asset_id)
        assert missing.value.status_code == 404


def test_addon_success_marks_the_asset_and_is_recorded_with_headers_and_body(
    sim: SimulatorClient, api: FileSpinClient
) -> None:
    asset = _asset()
    sim.put_asset(KEY, asset)
    result = api.post_addon(
        PlainApiKey(KEY), _url(sim, asset["id"], "face_recognition"), {"disposition": {"x": 1}}, "face"
    )
    assert result.status_code == 200
    assert not result.already_processed
    stored = sim.get_asset(asset["id"])
    assert stored is not None
    assert stored["data"]["_filespin_fr_count"] == 1
    assert "FACE_RECOGNITION" in stored["addons_info"]

    [call] = sim.calls(asset_id=asset["id"], addon="FACE_RECOGNITION")
    assert call.method == "POST"
    assert call.path == f"/api/v1/assets/{asset['id']}/addons/face_recognition"
    assert call.header("X-FileSpin-Api-Key") == KEY
    assert call.header("X-FileSpin-Internal-Request") == "true"
    assert call.json == {"disposition": {"x": 1}}
    assert call.status == 200
    assert sim.count(asset_id=asset["id"]) == 1
    assert sim.count(addon="scene_classification") == 0
    assert sim.counts() == {"addon:face_recognition": 1}


def test_scripted_sequence_then_default(sim: SimulatorClient, api: FileSpinClient) -> None:
    asset = _asset()
    sim.put_asset(KEY, asset)
    sim.script_addon(
        asset["id"],
        "SCENE_CLASSIFICATION",
        Step(503),
        Step(429, headers={"Retry-After": "7"}),
        Step(409),
        Step(202, body={"job_id": "job-42"}),
    )
    url = _url(sim, asset["id"], "scene_classification")
    key = PlainApiKey(KEY)
    with pytest.raises(FileSpinError) as unavailable:
        api.post_addon(key, url, {}, "scene")
    assert unavailable.value.status_code == 503
    assert unavailable.value.transient
    with pytest.raises(FileSpinError) as limited:
        api.post_addon(key, url, {}, "scene")
    assert limited.value.status_code == 429
    assert limited.value.retry_after == 7.0
    assert api.post_addon(key, url, {}, "scene").already_processed
    assert api.post_addon(key, url, {}, "scene").job_id == "job-42"
    assert api.post_addon(key, url, {}, "scene").status_code == 200  # script used up: the default answer
    assert [c.status for c in sim.calls(asset_id=asset["id"])] == [503, 429, 409, 202, 200]
    # a script for one asset does not touch another
    other = _asset()
    sim.put_asset(KEY, other)
    sim.script_addon(asset["id"], "SCENE_CLASSIFICATION", Step(500))
    assert api.post_addon(key, _url(sim, other["id"], "scene_classification"), {}, "scene").status_code == 200


def test_addon_default_async_job_and_unknown_asset(sim: SimulatorClient, api: FileSpinClient) -> None:
    asset = _asset()
    sim.put_asset(KEY, asset)
    sim.set_addon_default("EMOTION_RECOGNITION", status=202, async_job=True)
    result = api.post_addon(PlainApiKey(KEY), _url(sim, asset["id"], "emotion_recognition"), {}, "emotion")
    assert result.status_code == 202
    assert result.job_id is not None
    assert result.job_id.startswith("job-")
    with pytest.raises(FileSpinError) as missing:
        api.post_addon(PlainApiKey(OTHER_KEY), _url(sim, asset["id"], "emotion_recognition"), {}, "emotion")
    assert missing.value.status_code == 404


def test_face_data_delete(sim: SimulatorClient, api: FileSpinClient) -> None:
    asset = _asset(_filespin_fr_count=3)
    sim.put_asset(KEY, asset)
    url = f"{sim.base_url}/api/v1/assets/addons/face_recognition/delete"
    result = api.delete_addon_data(PlainApiKey(KEY), url, [asset["id"]], "face delete")
    assert result.status_code == 202
    stored = sim.get_asset(asset["id"])
    assert stored is not None
    assert "_filespin_fr_count" not in stored["data"]
    [call] = sim.calls(asset_id=asset["id"], endpoint=FACE_DELETE)
    assert call.json == {"ids": [asset["id"]]}
    headers = {"X-FileSpin-Api-Key": KEY}
    assert httpx.post(url, json={"ids": [f"{i:032x}" for i in range(101)]}, headers=headers).status_code == 400
    assert httpx.post(url, json={"ids": []}, headers=headers).status_code == 400
    assert httpx.post(url, json={"ids": [asset["id"]]}, headers={"X-FileSpin-Api-Key": "nope"}).status_code == 401


def test_backend_outage_scripts_for_settings_and_data(sim: SimulatorClient, api: FileSpinClient) -> None:
    asset = _asset()
    sim.put_asset(KEY, asset)
    sim.script_settings(Step(500), Step(502), apikey=KEY)
    sim.script_asset_data(Step(503, headers={"Retry-After": "1"}), Step(200, latency=0.2), asset_id=asset["id"])
    key = PlainApiKey(KEY)
    for expected in (500, 502):
        with pytest.raises(FileSpinError) as failed:
            api.get_user_settings_payload(key)
        assert failed.value.status_code == expected
        assert failed.value.transient
    assert api.get_user_settings_payload(key)["status"] == "OK"
    with pytest.raises(FileSpinError) as outage:
        api.get_asset_data(key, asset["id"])
    assert outage.value.retry_after == 1.0
    assert api.get_asset_data(key, asset["id"]).id == asset["id"]  # the slow step still answers the asset
    assert [c.status for c in sim.calls(endpoint="asset_data")] == [503, 200]


def test_addon_down_modes_and_back_up(sim: SimulatorClient, api: FileSpinClient) -> None:
    asset = _asset()
    sim.put_asset(KEY, asset)
    url = _url(sim, asset["id"], "face_recognition")
    key = PlainApiKey(KEY)

    sim.addon_down("FACE_RECOGNITION")
    with pytest.raises(FileSpinError) as down:
        api.post_addon(key, url, {}, "face")
    assert down.value.status_code == 503

    sim.addon_down("FACE_RECOGNITION", "close")
    with pytest.raises(FileSpinError) as closed:
        api.post_addon(key, url, {}, "face")
    assert closed.value.transient
    assert closed.value.status_code is None

    sim.addon_down("FACE_RECOGNITION", "hang")
    impatient = FileSpinClient(sim.base_url, read_timeout=0.3)
    try:
        with pytest.raises(FileSpinError) as hung:
            impatient.post_addon(key, url, {}, "face")
        assert hung.value.code == "timeout"
    finally:
        impatient.close()

    sim.addon_up("FACE_RECOGNITION")
    assert api.post_addon(key, url, {}, "face").status_code == 200
    outcomes = [c.outcome for c in sim.wait_for_calls(4, asset_id=asset["id"], timeout=10)]
    assert outcomes == ["down", "closed", "hung", "answered"]


def test_concurrent_slow_calls_are_all_answered(sim: SimulatorClient) -> None:
    asset = _asset()
    sim.put_asset(KEY, asset)
    sim.set_addon_default("*", latency=0.2)
    url = _url(sim, asset["id"], "scene_classification")
    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=64)) as http:

        def call(_: int) -> int:
            return http.post(url, json={}, headers={"X-FileSpin-Api-Key": KEY}).status_code

        with ThreadPoolExecutor(max_workers=50) as pool:
            statuses = list(pool.map(call, range(100)))
    assert statuses == [200] * 100
    assert sim.count(asset_id=asset["id"]) == 100


def test_reset_and_since(sim: SimulatorClient, api: FileSpinClient) -> None:
    api.get_user_settings_payload(PlainApiKey(KEY))
    mark = sim.last_seq()
    api.get_user_settings_payload(PlainApiKey(KEY))
    assert len(sim.calls(since=mark)) == 1
    sim.reset()
    assert sim.calls() == []
    with pytest.raises(FileSpinError) as gone:
        api.get_user_settings_payload(PlainApiKey(KEY))
    assert gone.value.status_code == 401


def test_simulator_logs_never_show_the_key(
    sim: SimulatorClient, api: FileSpinClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    asset = _asset()
    sim.put_asset(KEY, asset)
    sim.script_addon(asset["id"], "FACE_RECOGNITION", Step(500))
    with pytest.raises(FileSpinError):
        api.post_addon(PlainApiKey(KEY), _url(sim, asset["id"], "face_recognition"), {}, "face")
    api.get_user_settings_payload(PlainApiKey(KEY))
    assert "simulator:" in caplog.text  # the simulator did log its calls
    assert KEY not in caplog.text


def test_standalone_process() -> None:
    with run_simulator(in_process=False) as sim:
        sim.put_user(KEY, SETTINGS_DATA)
        answer = httpx.get(f"{sim.base_url}/api/v1/user/settings", headers={"X-FileSpin-Api-Key": KEY})
        assert answer.json() == {"status": "OK", "data": SETTINGS_DATA}
        assert sim.count(endpoint="settings") == 1


def test_control_plane_rejects_bad_requests(sim: SimulatorClient) -> None:
    with pytest.raises(RuntimeError, match="HTTP 400"):
        sim.addon_down("FACE_RECOGNITION", "explode")  # type: ignore[arg-type]
    assert httpx.get(f"{sim.base_url}/api/v1/nothing").status_code == 404
    assert httpx.get(f"{sim.base_url}/api/v1/assets/{uuid.uuid4().hex}/addons/face_recognition").status_code == 405
