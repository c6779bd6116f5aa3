"""Fixtures for common's tests: a real Redis server of our own (never the shared one) and settings."""

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
    """A Redis for this test session from the devkit (TEST_REDIS_URL, else a server of our own; never 6379's)."""
    with provision_redis() as provisioned:
        yield provisioned.url


@pytest.fixture
def redis_client(redis_url: str) -> redis.Redis[bytes]:
    """A client on the session Redis."""
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def keys() -> Keys:
    """A key space unique to the test, so tests never see each other's data."""
    return Keys(f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture
def fernet_key() -> str:
    """A fresh Fernet key."""
    return Fernet.generate_key().decode()
