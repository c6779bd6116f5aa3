"""/dead-letters: list and filters (open), show, replay and purge (operator token), on a real Redis and broker."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from asset_post_process.common.deadletters import DeadLetter, DeadLetterStore
from asset_post_process.common.keys import Keys
from asset_post_process.health_api.settings import HealthSettings

from .conftest import TOKEN, _client

pytestmark = pytest.mark.anyio

TOKEN_LIKE = "gAAAAA" + "x" * 120


def letter(settings: HealthSettings, **fields: Any) -> DeadLetter:
    values: dict[str, Any] = {
        "task": "trigger_addon",
        "queue": settings.trigger_queue,
        "message": {"job_id": "j1", "apikey": TOKEN_LIKE, "addon": "FACE_RECOGNITION"},
        "reason_code": "http_403",
        "reason": "the addon answered 403",
        "addon": "FACE_RECOGNITION",
        "asset_id": "a" * 32,
        **fields,
    }
    return DeadLetter(**values)


@pytest.fixture
def store(rds: redis.Redis[bytes], keys: Keys) -> DeadLetterStore:
    return DeadLetterStore(rds, keys)


async def test_list_filters_by_addon_reason_task_and_age(
    api: httpx.AsyncClient, store: DeadLetterStore, settings: HealthSettings
) -> None:
    old = store.add(letter(settings, failed_at=time.time() - 7200))
    scene = store.add(letter(settings, addon="SCENE_CLASSIFICATION", reason_code="http_404"))
    process = store.add(letter(settings, task="process_asset", queue=settings.process_queue, addon=None))

    async def ids(**params: Any) -> list[str]:
        response = await api.get("/dead-letters", params=params)
        assert response.status_code == 200, response.text
        assert response.json()["total"] == 3
        return [item["id"] for item in response.json()["items"]]

    assert await ids() == [process.id, scene.id, old.id]
    assert await ids(addon="FACE_RECOGNITION") == [old.id]
    assert await ids(reason_code="http_404") == [scene.id]
    assert await ids(task="process_asset") == [process.id]
    assert await ids(older_than=3600) == [old.id]
    assert await ids(newer_than=3600) == [process.id, scene.id]
    assert await ids(limit=1) == [process.id]
    listed = (await api.get("/dead-letters", params={"addon": "FACE_RECOGNITION"})).json()["items"][0]
    assert "message" not in listed
    assert listed["age_seconds"] >= 7200


@pytest.mark.parametrize("params", [{"addon": "lower"}, {"limit": 0}, {"older_than": -1}, {"older_than": "nan"}])
async def test_bad_filters_are_422(api: httpx.AsyncClient, params: dict[str, Any]) -> None:
    assert (await api.get("/dead-letters", params=params)).status_code == 422


async def test_show_needs_the_token_and_shows_the_message(
    api: httpx.AsyncClient, store: DeadLetterStore, settings: HealthSettings, auth: dict[str, str]
) -> None:
    stored = store.add(letter(settings))
    assert (await api.get(f"/dead-letters/{stored.id}")).status_code == 401
    response = await api.get(f"/dead-letters/{stored.id}", headers=auth)
    assert response.status_code == 200
    assert response.json()["message"]["apikey"] == TOKEN_LIKE
    assert (await api.get(f"/dead-letters/{'0' * 32}", headers=auth)).status_code == 404


def queued_messages(rds: redis.Redis[bytes], queue: str) -> list[tuple[str, Any]]:
    """(task name, first argument) of each message kombu left in ``queue``'s list."""
    result = []
    for raw in rds.lrange(queue, 0, -1):
        envelope = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        result.append((envelope["headers"]["task"], args[0]))
    return result


async def test_replay_sends_the_selected_letters_back_and_deletes_them(
    api: httpx.AsyncClient,
    rds: redis.Redis[bytes],
    store: DeadLetterStore,
    settings: HealthSettings,
    auth: dict[str, str],
) -> None:
    face = store.add(letter(settings))
    store.add(letter(settings, addon="SCENE_CLASSIFICATION"))
    response = await api.post("/dead-letters/replay", json={"addon": "FACE_RECOGNITION"}, headers=auth)
    assert response.status_code == 200, response.text
    assert response.json() == {"replayed": 1}
    assert queued_messages(rds, settings.trigger_queue) == [("trigger_addon", face.message)]
    assert [d.addon for d in store.list()] == ["SCENE_CLASSIFICATION"]


async def test_replay_by_id_and_all(
    api: httpx.AsyncClient, store: DeadLetterStore, settings: HealthSettings, auth: dict[str, str]
) -> None:
    first, second, third = (store.add(letter(settings, event_id=f"e{i}")) for i in range(3))
    response = await api.post("/dead-letters/replay", json={"ids": [second.id]}, headers=auth)
    assert response.json() == {"replayed": 1}
    assert {d.id for d in store.list()} == {first.id, third.id}
    assert (await api.post("/dead-letters/replay", json={}, headers=auth)).status_code == 422
    response = await api.post("/dead-letters/replay", json={"all": True}, headers=auth)
    assert response.json() == {"replayed": 2}
    assert store.count() == 0


async def test_purge_needs_a_filter_or_all(
    api: httpx.AsyncClient, store: DeadLetterStore, settings: HealthSettings, auth: dict[str, str]
) -> None:
    store.add(letter(settings))
    store.add(letter(settings, reason_code="http_404"))
    store.add(letter(settings, reason_code="http_404"))
    assert (await api.delete("/dead-letters", headers=auth)).status_code == 400
    response = await api.delete("/dead-letters", params={"reason_code": "http_404"}, headers=auth)
    assert response.json() == {"purged": 2}
    assert store.count() == 1
    assert (await api.delete("/dead-letters", params={"all": "true"}, headers=auth)).json() == {"purged": 1}
    assert store.count() == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/dead-letters/replay"), ("DELETE", "/dead-letters?all=true"), ("GET", f"/dead-letters/{'0' * 32}")],
)
async def test_guarded_routes_refuse_a_wrong_or_missing_token(
    api: httpx.AsyncClient, store: DeadLetterStore, settings: HealthSettings, method: str, path: str
) -> None:
    store.add(letter(settings))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        response = await api.request(method, path, json={"all": True}, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
    assert store.count() == 1


async def test_guarded_routes_are_off_without_a_configured_token(
    make_settings: Callable[..., HealthSettings], rds: redis.Redis[bytes]
) -> None:
    settings = make_settings(operator_token=None)
    store = DeadLetterStore(rds, Keys(settings.key_prefix))
    store.add(letter(settings))
    async for client in _client(settings):
        headers = {"Authorization": f"Bearer {TOKEN}"}
        replay = await client.post("/dead-letters/replay", json={"all": True}, headers=headers)
        purge = await client.delete("/dead-letters", params={"all": "true"}, headers=headers)
        for response in (replay, purge):
            assert response.status_code == 404
            assert "disabled" in response.json()["detail"]
        assert (await client.get("/dead-letters")).json()["total"] == 1
    assert store.count() == 1
