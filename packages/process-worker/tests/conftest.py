"""Fixtures for the process worker's tests: a Redis of our own, the FileSpin simulator, settings and services.

Every test gets its own key prefix and its own queue names, so tests share one Redis without seeing each
other's data (and nothing is ever flushed).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from cryptography.fernet import Fernet

from asset_post_process.common.celeryapp import make_celery
from asset_post_process.common.keys import Keys
from asset_post_process.common.services import Services
from asset_post_process.common.settings import Settings, load_settings
from asset_post_process.devkit.simulator import SimulatorClient, run_simulator

FERNET_KEY = Fernet.generate_key().decode()


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorClient]:
    """The FileSpin simulator, served from a thread of this process for the session."""
    with run_simulator() as sim:
        yield sim


@pytest.fixture
def sim(simulator: SimulatorClient) -> SimulatorClient:
    """The simulator, emptied for this test."""
    simulator.reset()
    return simulator


@pytest.fixture
def make_settings(redis_url: str, keys: Keys, simulator: SimulatorClient) -> Any:
    """Build settings for this test's Redis key space, queues and simulator (``**overrides`` win)."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": redis_url,
            "apikey_keys": FERNET_KEY,
            "filespin_api_url": simulator.base_url,
            "key_prefix": keys.prefix,
            "process_queue": f"{keys.prefix}-process",
            "trigger_queue": f"{keys.prefix}-trigger",
            "retry_backoff_base_seconds": 0.5,
            "retry_backoff_max_seconds": 5.0,
            "http_read_timeout": 5.0,
        }
        values.update(overrides)
        built: Settings = load_settings(**values)
        return built

    return build


@pytest.fixture
def settings(make_settings: Any) -> Settings:
    """Default test settings."""
    result: Settings = make_settings()
    return result


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    """Real services over the test Redis and the simulator."""
    built = Services.from_settings(settings)
    yield built
    built.filespin.close()
    built.redis.close()


@pytest.fixture
def celery_app(settings: Settings) -> Iterator[Celery]:
    """A real Celery app on the test Redis (it only sends: the tests read the queue lists)."""
    app = make_celery("process-worker-tests", settings)
    yield app
    app.close()
