"""/livez, /healthcheck and /readyz against a real Redis."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
import redis

from asset_post_process.common.heartbeat import Heartbeat
from asset_post_process.common.keys import Keys
from asset_post_process.health_api.settings import HealthSettings

from .conftest import _client

pytestmark = pytest.mark.anyio


def beat(rds: redis.Redis[bytes], keys: Keys, kind: str, node: str) -> None:
    Heartbeat(rds, keys, kind, node, ttl_seconds=30).beat()


async def test_livez_answers_without_checking_anything(api: httpx.AsyncClient) -> None:
    response = await api.get("/livez")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_no_worker_heartbeat_is_503_naming_both_kinds(api: httpx.AsyncClient) -> None:
    response = await api.get("/healthcheck")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["failed"] == ["workers.process", "workers.trigger"]
    assert body["checks"]["redis"]["ok"] is True
    assert body["checks"]["workers.process"]["live"] == 0


@pytest.mark.parametrize("path", ["/healthcheck", "/readyz"])
async def test_fresh_heartbeats_of_both_kinds_are_200(
    api: httpx.AsyncClient, rds: redis.Redis[bytes], keys: Keys, path: str
) -> None:
    beat(rds, keys, "process", "process@a")
    beat(rds, keys, "trigger", "trigger@a")
    beat(rds, keys, "trigger", "trigger@b")
    response = await api.get(path)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {
        "status": "ok",
        "failed": [],
        "checks": {
            "redis": {"ok": True, "detail": "PONG", "live": None},
            "workers.process": {"ok": True, "detail": body["checks"]["workers.process"]["detail"], "live": 1},
            "workers.trigger": {"ok": True, "detail": body["checks"]["workers.trigger"]["detail"], "live": 2},
        },
    }


async def test_a_stale_heartbeat_fails_only_its_kind(
    api: httpx.AsyncClient, rds: redis.Redis[bytes], keys: Keys
) -> None:
    beat(rds, keys, "process", "process@a")
    rds.zadd(keys.heartbeats("trigger"), {"trigger@old": time.time() - 31})
    response = await api.get("/healthcheck")
    assert response.status_code == 503
    assert response.json()["failed"] == ["workers.trigger"]


async def test_a_stopped_worker_removes_its_heartbeat(
    api: httpx.AsyncClient, rds: redis.Redis[bytes], keys: Keys
) -> None:
    beat(rds, keys, "trigger", "trigger@a")
    heartbeat = Heartbeat(rds, keys, "process", "process@a", ttl_seconds=30)
    heartbeat.beat()
    assert (await api.get("/healthcheck")).status_code == 200
    heartbeat.stop()
    assert (await api.get("/healthcheck")).json()["failed"] == ["workers.process"]


async def test_redis_down_is_503_naming_redis(make_settings: Callable[..., HealthSettings], down_url: str) -> None:
    async for client in _client(make_settings(redis_url=down_url)):
        response = await client.get("/healthcheck")
        assert response.status_code == 503
        body = response.json()
        assert body["failed"] == ["redis", "workers.process", "workers.trigger"]
        assert "Redis did not answer" in body["checks"]["redis"]["detail"]
        assert (await client.get("/livez")).status_code == 200
