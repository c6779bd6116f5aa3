"""Fixtures: a real Redis (devkit provisioning), per-test key prefix and queue names, the app over ASGI."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from asset_post_process.common.keys import Keys
from asset_post_process.devkit.ports import free_port
from asset_post_process.health_api.app import create_app
from asset_post_process.health_api.settings import HealthSettings

TOKEN = "operator-token-for-tests"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def make_settings(redis_url: str, unique: str) -> Callable[..., HealthSettings]:
    """Settings isolated by key prefix and queue names; keyword arguments override."""

    def make(**overrides: Any) -> HealthSettings:
        values: dict[str, Any] = {
            "redis_url": redis_url,
            "key_prefix": f"t-{unique}",
            "process_queue": f"process-{unique}",
            "trigger_queue": f"trigger-{unique}",
            "heartbeat_ttl_seconds": 30,
            "operator_token": TOKEN,
            **overrides,
        }
        return HealthSettings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., HealthSettings]) -> HealthSettings:
    return make_settings()


@pytest.fixture
def keys(settings: HealthSettings) -> Keys:
    return Keys(settings.key_prefix)


@pytest.fixture
def rds(redis_url: str) -> Iterator[redis.Redis[bytes]]:
    client: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def down_url() -> str:
    """A Redis URL nothing listens on."""
    return f"redis://127.0.0.1:{free_port()}/0"


async def _client(settings: HealthSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        yield client
    await app.state.resources.aclose()


@pytest.fixture
async def api(settings: HealthSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The app over the ASGI transport, on this test's settings."""
    async for client in _client(settings):
        yield client


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}
