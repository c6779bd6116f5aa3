"""Pytest fixtures every package's unit tests share, loaded by the repository's root ``conftest.py``.

- ``redis_url``: one Redis for the test session from :func:`~.redis_provision.provision_redis` (TEST_REDIS_URL or
  REDIS_URL, else a server of the session's own; never the machine's shared one, never flushed);
- ``redis_client``: a client on it, closed after the test;
- ``keys``: a key space unique to the test, so tests sharing the Redis never see each other's data;
- ``fernet_key``: a fresh Fernet key.
"""

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
    """A Redis for this test session."""
    with provision_redis() as provisioned:
        yield provisioned.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis[bytes]]:
    """A client on the session's Redis."""
    client: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def keys() -> Keys:
    """A key space unique to the test."""
    return Keys(f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture
def fernet_key() -> str:
    """A fresh Fernet key."""
    return Fernet.generate_key().decode()
