"""Fixtures for common's tests: a real Redis server of our own (never the shared one) and settings."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from cryptography.fernet import Fernet

from asset_post_process.common.keys import Keys


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis for this test session: TEST_REDIS_URL, else a redis-server of our own on a free port."""
    if os.environ.get("TEST_REDIS_URL"):
        yield os.environ["TEST_REDIS_URL"]
        return
    server = shutil.which("redis-server")
    if server is None:
        from asset_post_process.devkit.redis_provision import provision_redis  # embedded fallback

        with provision_redis() as provisioned:
            yield provisioned.url
        return
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="common-tests-redis-")
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(workdir, ignore_errors=True)


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
