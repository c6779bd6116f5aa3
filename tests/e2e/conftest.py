"""End-to-end fixtures: a real Redis, the FileSpin simulator on 127.0.0.1, and the real programs as processes.

Session fixtures (built once):

- ``redis_server``  -> ProvisionedRedis (``.url``, ``.kind``; the test report's summary says which kind was used)
- ``simulator``     -> SimulatorClient of the session's simulator (``.base_url`` is the FileSpin API URL)
- ``fernet_key``    -> the test Fernet key (``POSTPROCESS_APIKEY_KEYS``)
- ``service_env``   -> the base environment of every stack (Redis, simulator, key, fast retries and breaker)
- ``service``       -> ServiceStack: process worker + trigger worker + health API, ready
- ``producer``      -> EventProducer sending to ``service``'s process queue
- ``messages``      -> MessageFactory (valid ``process_asset`` messages under ``fernet_key``)
- ``logs_dir``      -> where every program's log is kept (``test-logs/e2e-<time>/``)

Per test:

- ``sim``           -> ``simulator`` after a reset (no users, assets, scripts, outages or calls)
- ``new_account``   -> ``new_account(settings=None, assets=())`` loads a fresh user (all three built-in addons
                       on file-saved for image/* by default) into the simulator and returns the ``Account``
- ``stack_factory`` -> ``stack_factory(overrides=None, *, with_api=False, name=None)`` starts an extra isolated
                       ServiceStack (own queues and key prefix) with env overrides; stopped after the test
- ``wait_until``    -> ``wait_until(predicate, timeout=30, interval=0.1, message=None)``, bounded polling

A failing test's report carries the end of every running program's log.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from asset_post_process.common.producer import EventProducer
from asset_post_process.devkit import factory
from asset_post_process.devkit.launcher import ServiceStack
from asset_post_process.devkit.redis_provision import ProvisionedRedis, provision_redis
from asset_post_process.devkit.simulator import SimulatorClient, run_simulator
from asset_post_process.devkit.waiting import wait_until as _wait_until

REPO = Path(__file__).resolve().parents[2]

#: Fast settings for tests: short backoffs, a breaker that closes again soon, quick heartbeats.
FAST_SETTINGS = {
    "POSTPROCESS_LOG_LEVEL": "INFO",
    "POSTPROCESS_RETRY_BACKOFF_BASE_SECONDS": "0.2",
    "POSTPROCESS_RETRY_BACKOFF_MAX_SECONDS": "2",
    "POSTPROCESS_BREAKER_OPEN_SECONDS": "2",
    "POSTPROCESS_HEARTBEAT_TTL_SECONDS": "4",
    "POSTPROCESS_HTTP_READ_TIMEOUT": "5",
}

_STACKS = pytest.StashKey[list[ServiceStack]]()
_REDIS = pytest.StashKey[ProvisionedRedis]()
log = logging.getLogger("e2e")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_STACKS] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    e2e_dir = Path(__file__).parent
    for item in items:
        if e2e_dir in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


def _say(config: pytest.Config, line: str) -> None:
    """Write a line to the terminal even while output is captured."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)
    log.info(line)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and report.when in ("setup", "call"):
        for stack in item.config.stash.get(_STACKS, []):
            report.sections.append((f"program logs of stack {stack.name}", stack.log_report(3000)))
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    provisioned = config.stash.get(_REDIS, None)
    if provisioned is not None:
        terminalreporter.write_line(f"e2e Redis: kind={provisioned.kind} ({provisioned.detail})")


# ---------------------------------------------------------------------------------------------- session
@pytest.fixture(scope="session")
def logs_dir() -> Path:
    base = Path(os.environ.get("E2E_LOGS_DIR", REPO / "test-logs"))
    path = base / f"e2e-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def redis_server(pytestconfig: pytest.Config) -> Iterator[ProvisionedRedis]:
    with provision_redis() as provisioned:
        pytestconfig.stash[_REDIS] = provisioned
        _say(pytestconfig, f"e2e Redis: kind={provisioned.kind} url={provisioned.url} ({provisioned.detail})")
        yield provisioned


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorClient]:
    with run_simulator() as client:
        yield client


@pytest.fixture(scope="session")
def fernet_key() -> str:
    return factory.new_fernet_key()


@pytest.fixture(scope="session")
def service_env(redis_server: ProvisionedRedis, simulator: SimulatorClient, fernet_key: str) -> dict[str, str]:
    return {
        "POSTPROCESS_REDIS_URL": redis_server.url,
        "POSTPROCESS_FILESPIN_API_URL": simulator.base_url,
        "POSTPROCESS_APIKEY_KEYS": fernet_key,
        **FAST_SETTINGS,
    }


@pytest.fixture(scope="session")
def service(pytestconfig: pytest.Config, service_env: dict[str, str], logs_dir: Path) -> Iterator[ServiceStack]:
    stack = ServiceStack(service_env, logs_dir=logs_dir, name=f"e2e-{uuid.uuid4().hex[:6]}")
    pytestconfig.stash[_STACKS].append(stack)
    try:
        stack.start()
        _say(pytestconfig, f"e2e service stack {stack.name} ready; logs in {logs_dir}")
        yield stack
    finally:
        stack.stop()
        pytestconfig.stash[_STACKS].remove(stack)


@pytest.fixture(scope="session")
def producer(service: ServiceStack) -> EventProducer:
    return service.producer()


@pytest.fixture(scope="session")
def messages(fernet_key: str) -> factory.MessageFactory:
    return factory.MessageFactory([fernet_key])


# ---------------------------------------------------------------------------------------------- per test
@pytest.fixture
def sim(simulator: SimulatorClient) -> SimulatorClient:
    simulator.reset()
    return simulator


@pytest.fixture
def new_account(sim: SimulatorClient) -> Callable[..., factory.Account]:
    def make(settings: dict[str, Any] | None = None, assets: Sequence[dict[str, Any]] = ()) -> factory.Account:
        account = factory.Account(settings=settings or factory.all_builtin_addons(), assets=list(assets))
        return account.load_into(sim)

    return make


@pytest.fixture
def stack_factory(
    pytestconfig: pytest.Config, service_env: dict[str, str], logs_dir: Path
) -> Iterator[Callable[..., ServiceStack]]:
    started: list[ServiceStack] = []

    def start(
        overrides: Mapping[str, str] | None = None, *, with_api: bool = False, name: str | None = None
    ) -> ServiceStack:
        stack = ServiceStack(
            {**service_env, **(overrides or {})},
            logs_dir=logs_dir,
            name=name or f"e2e-extra-{uuid.uuid4().hex[:6]}",
            with_api=with_api,
        )
        started.append(stack)
        pytestconfig.stash[_STACKS].append(stack)
        return stack.start()

    try:
        yield start
    finally:
        for stack in reversed(started):
            stack.stop()
            pytestconfig.stash[_STACKS].remove(stack)


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    return _wait_until
