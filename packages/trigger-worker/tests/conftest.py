"""Fixtures for the trigger worker's tests: a Redis of our own (devkit provisioning), a fresh key space."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from cryptography.fernet import Fernet

from asset_post_process.common.keys import Keys
from asset_post_process.devkit.redis_provision import provision_redis


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis for this session: TEST_REDIS_URL, else a server started on a free port (never 6379's data)."""
    with provision_redis() as provisioned:
        yield provisioned.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis[bytes]]:
    """A client on the session Redis."""
    client: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def keys() -> Keys:
    """A key space unique to the test: tests never see each other's keys, nothing is ever flushed."""
    return Keys(f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture
def fernet_key() -> str:
    """A fresh Fernet key."""
    return Fernet.generate_key().decode()
