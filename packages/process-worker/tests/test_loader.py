"""Loading settings (cached, single flight) and asset data (always fresh) from the simulator, through real Redis."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from asset_post_process.common.contract import AssetEvent
from asset_post_process.common.crypto import PlainApiKey
from asset_post_process.common.filespin import FileSpinError
from asset_post_process.common.services import Services
from asset_post_process.devkit.simulator import ASSET_DATA, SETTINGS, SimulatorClient, Step
from asset_post_process.process_worker.loader import InvalidAssetData, Loader

ASSET_ID = "abcdefabcdefabcdefabcdefabcdef01"
KEY = "plain-user-key-for-loader-tests"
USER = {"addons": {"FACE_RECOGNITION": {"added": True, "enabled": True, "settings": {"event-hooks": {}}}}}
ASSET = {"id": ASSET_ID, "status": "OK", "content_type": "image/jpeg", "data": {"a": 1}}


@pytest.fixture
def loader(services: Services) -> Loader:
    s = services.settings
    return Loader(services.filespin, services.cache, services.cipher, services.keys, s.settings_cache_ttl_seconds)


@pytest.fixture
def user(sim: SimulatorClient) -> PlainApiKey:
    sim.put_user(KEY, USER)
    sim.put_asset(KEY, ASSET)
    return PlainApiKey(KEY)


def event(event_type: str = "file-saved", asset_data: dict[str, Any] | None = None) -> AssetEvent:
    return AssetEvent.model_validate(
        {"apikey": "gAAAAA-token", "asset_id": ASSET_ID, "event_type": event_type, "asset_data": asset_data}
    )


def test_settings_are_cached_under_a_fingerprint(
    loader: Loader, user: PlainApiKey, sim: SimulatorClient, services: Services, redis_client: redis.Redis[bytes]
) -> None:
    first = loader.user_settings(user)
    second = loader.user_settings(user)
    assert first == second
    assert "FACE_RECOGNITION" in first.addons
    assert sim.count(endpoint=SETTINGS) == 1
    cache_key = loader.settings_cache_key(user)
    assert cache_key == services.keys.settings_cache(services.cipher.fingerprint(user))
    assert KEY not in cache_key
    stored = redis_client.get(cache_key)
    assert stored is not None
    assert KEY.encode() not in stored
    ttl = redis_client.ttl(cache_key)
    assert 0 < ttl <= services.settings.settings_cache_ttl_seconds


def test_settings_expire_with_their_ttl(
    make_settings: Any, user: PlainApiKey, sim: SimulatorClient, redis_client: redis.Redis[bytes]
) -> None:
    short = Services.from_settings(make_settings(settings_cache_ttl_seconds=1))
    loader = Loader(short.filespin, short.cache, short.cipher, short.keys, 1)
    loader.user_settings(user)
    assert redis_client.ttl(loader.settings_cache_key(user)) in (0, 1)


def test_each_user_has_its_own_entry(loader: Loader, user: PlainApiKey, sim: SimulatorClient) -> None:
    sim.put_user("another-users-key", {"addons": {}})
    other = PlainApiKey("another-users-key")
    assert loader.settings_cache_key(other) != loader.settings_cache_key(user)
    assert loader.user_settings(other).addons == {}
    assert "FACE_RECOGNITION" in loader.user_settings(user).addons
    assert sim.count(endpoint=SETTINGS) == 2


def test_single_flight_across_threads(loader: Loader, user: PlainApiKey, sim: SimulatorClient) -> None:
    sim.configure(api_latency=0.3)  # keep the first load in flight while the others arrive
    barrier = threading.Barrier(6)
    results: list[Any] = []

    def load() -> None:
        barrier.wait(10)
        results.append(loader.user_settings(user))

    threads = [threading.Thread(target=load) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 6
    assert sim.count(endpoint=SETTINGS) == 1


@pytest.mark.parametrize(
    "body",
    [{"addons": ["FACE_RECOGNITION"]}, {"addons": "all"}, "nope", ["x"]],  # the "data" the simulator wraps
)
def test_malformed_settings_are_permanent_and_never_cached(
    loader: Loader, user: PlainApiKey, sim: SimulatorClient, redis_client: redis.Redis[bytes], body: Any
) -> None:
    sim.script_settings(Step(200, body=body))
    with pytest.raises(FileSpinError) as raised:
        loader.user_settings(user)
    assert not raised.value.transient
    assert raised.value.code == "bad_answer"
    assert redis_client.get(loader.settings_cache_key(user)) is None
    assert "FACE_RECOGNITION" in loader.user_settings(user).addons  # the next answer is good again


def test_unknown_key_is_401_and_not_cached(loader: Loader, sim: SimulatorClient) -> None:
    stranger = PlainApiKey("nobody-has-this-key")
    for _ in range(2):
        with pytest.raises(FileSpinError) as raised:
            loader.user_settings(stranger)
        assert raised.value.status_code == 401
        assert not raised.value.transient
    assert sim.count(endpoint=SETTINGS) == 2


def test_asset_data_is_fetched_fresh_for_every_event(loader: Loader, user: PlainApiKey, sim: SimulatorClient) -> None:
    assert loader.asset(event(), user).data == {"a": 1}
    sim.put_asset(KEY, {**ASSET, "data": {"a": 2}})
    assert loader.asset(event("file-data-updated"), user).data == {"a": 2}
    assert sim.count(endpoint=ASSET_DATA) == 2


def test_missing_asset_is_404(loader: Loader, user: PlainApiKey, sim: SimulatorClient) -> None:
    sim.delete_asset(ASSET_ID)
    with pytest.raises(FileSpinError) as raised:
        loader.asset(event(), user)
    assert raised.value.status_code == 404


def test_file_deleted_uses_the_message_and_never_calls(loader: Loader, user: PlainApiKey, sim: SimulatorClient) -> None:
    asset = loader.asset(event("file-deleted", {"id": ASSET_ID, "content_type": "image/png", "data": None}), user)
    assert asset.content_type == "image/png"
    assert asset.data == {}
    assert sim.count() == 0


def test_file_deleted_with_malformed_asset_data(loader: Loader, user: PlainApiKey, sim: SimulatorClient) -> None:
    with pytest.raises(InvalidAssetData):
        loader.asset(event("file-deleted", {"id": ASSET_ID, "data": "not an object"}), user)
    assert sim.count() == 0
