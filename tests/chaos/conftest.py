"""The reliability suite's fixtures: its own persistent Redis, the FileSpin simulator, and one service stack.

``CHAOS_SIZE=quick`` (the default, what ``make test`` runs) or ``CHAOS_SIZE=full`` (``make chaos``) picks the
sizes in :data:`PROFILES`. Scenarios run in file order (``test_1_...`` to ``test_6_...``) against one stack;
each one starts by making sure every program runs and the health check is green, and measures only its own
events (its own user, its own event ids, the simulator's calls since it started).

Each scenario reports its figures with the ``figures`` fixture: they are printed at once (even under output
capture) and again as a table at the end of the run, and written to ``<logs>/chaos-figures.json``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import redis

from asset_post_process.common.broker import INFLIGHT_INDEX_KEY
from asset_post_process.common.deadletters import DeadLetter, DeadLetterStore
from asset_post_process.devkit import factory
from asset_post_process.devkit.launcher import ServiceStack
from asset_post_process.devkit.redis_provision import ProvisionedRedis, provision_redis
from asset_post_process.devkit.simulator import SimulatorClient, run_simulator
from asset_post_process.devkit.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
log = logging.getLogger("chaos")

#: The two addons every scenario's user has on ``file-saved`` for images (simulator path names below).
ADDONS = ("FACE_RECOGNITION", "SCENE_CLASSIFICATION")
ADDON_PATHS = tuple(a.lower() for a in ADDONS)

#: kombu's Redis transport keeps delivered, unacknowledged messages in this hash until they are acked.
UNACKED = "unacked"

TRIGGER_CONCURRENCY = 8
BREAKER_THRESHOLD = 5
BREAKER_OPEN_SECONDS = 3.0
HTTP_READ_TIMEOUT = 3.0
MAX_RETRIES = 100
BACKOFF_BASE = 0.2
BACKOFF_CAP = 2.0

#: The stack's settings: a short visibility timeout (a SIGKILLed worker's unacked tasks come back after it),
#: fast backoff with a large retry budget, a breaker that re-probes soon, short HTTP and heartbeat timeouts.
CHAOS_SETTINGS = {
    "POSTPROCESS_LOG_LEVEL": "INFO",
    "POSTPROCESS_VISIBILITY_TIMEOUT_SECONDS": "10",
    "POSTPROCESS_RETRY_BACKOFF_BASE_SECONDS": str(BACKOFF_BASE),
    "POSTPROCESS_RETRY_BACKOFF_MAX_SECONDS": str(BACKOFF_CAP),
    "POSTPROCESS_PROCESS_MAX_RETRIES": str(MAX_RETRIES),
    "POSTPROCESS_TRIGGER_MAX_RETRIES": str(MAX_RETRIES),
    "POSTPROCESS_BREAKER_FAILURE_THRESHOLD": str(BREAKER_THRESHOLD),
    "POSTPROCESS_BREAKER_OPEN_SECONDS": str(BREAKER_OPEN_SECONDS),
    "POSTPROCESS_HEARTBEAT_TTL_SECONDS": "6",
    "POSTPROCESS_HTTP_READ_TIMEOUT": str(HTTP_READ_TIMEOUT),
    "POSTPROCESS_HTTP_CONNECT_TIMEOUT": "1",
    "POSTPROCESS_SETTINGS_CACHE_TTL_SECONDS": "2",
    "POSTPROCESS_ADDON_RATE_LIMIT_PER_SECOND": "500",
    "POSTPROCESS_PROCESS_CONCURRENCY": "4",
    "POSTPROCESS_TRIGGER_CONCURRENCY": str(TRIGGER_CONCURRENCY),
}


@dataclass(frozen=True)
class Profile:
    """The sizes of one run."""

    name: str
    # 1. workers killed
    kill_rate: float  # events per second
    kill_duration: float  # seconds of stream
    kills: int  # kill rounds (process, trigger, both, in turn)
    # 2. Redis restarted
    redis_rate: float
    redis_duration: float
    redis_restarts: tuple[tuple[bool, float], ...]  # (hard kill?, seconds down)
    # 3. addon outage
    outage_seconds: float
    outage_modes: tuple[str, ...]
    outage_rate: float
    # 4. backend outage and slowness
    backend_outage_seconds: float
    backend_slow_seconds: float
    backend_latency: float
    backend_rate: float
    # 5. bad input
    malformed: int
    valid_in_mix: int
    # waiting for recovery
    recovery_timeout: float = 180.0


PROFILES = {
    "quick": Profile(
        name="quick",
        kill_rate=3.0,
        kill_duration=30.0,
        kills=3,
        redis_rate=3.0,
        redis_duration=20.0,
        redis_restarts=((True, 3.0),),
        outage_seconds=8.0,
        outage_modes=("503", "hang"),
        outage_rate=2.0,
        backend_outage_seconds=6.0,
        backend_slow_seconds=6.0,
        backend_latency=5.0,
        backend_rate=2.0,
        malformed=400,
        valid_in_mix=40,
    ),
    "full": Profile(
        name="full",
        kill_rate=5.0,
        kill_duration=90.0,
        kills=9,
        redis_rate=5.0,
        redis_duration=60.0,
        redis_restarts=((False, 8.0), (True, 8.0)),
        outage_seconds=30.0,
        outage_modes=("503", "hang"),
        outage_rate=3.0,
        backend_outage_seconds=20.0,
        backend_slow_seconds=20.0,
        backend_latency=10.0,
        backend_rate=3.0,
        malformed=3000,
        valid_in_mix=200,
        recovery_timeout=300.0,
    ),
}

_FIGURES = pytest.StashKey[list[dict[str, Any]]]()
_LOGS = pytest.StashKey[Path]()


def profile_from_env() -> Profile:
    """The profile ``CHAOS_SIZE`` names (``quick`` when unset)."""
    size = os.environ.get("CHAOS_SIZE", "quick").strip().lower() or "quick"
    if size not in PROFILES:
        raise pytest.UsageError(f"CHAOS_SIZE must be one of {sorted(PROFILES)}, not {size!r}")
    return PROFILES[size]


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_FIGURES] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            # Each scenario bounds its own waits; this only stops a hung run (the default is 300 s).
            item.add_marker(pytest.mark.timeout(1800))


def _say(config: pytest.Config, line: str) -> None:
    """Print ``line`` now, even while pytest captures the output (the figures show without ``-s``)."""
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        with capman.global_and_fixture_disabled():
            print(line, flush=True)
    else:
        print(line, flush=True)
    log.info(line)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    figures = config.stash.get(_FIGURES, [])
    if not figures:
        return
    terminalreporter.section(f"chaos figures ({profile_from_env().name} run)")
    for entry in figures:
        terminalreporter.write_line(f"{entry['scenario']}")
        for name, value in entry.items():
            if name != "scenario":
                terminalreporter.write_line(f"    {name:<44} {_format(value)}")
    logs = config.stash.get(_LOGS, None)
    if logs is not None:
        terminalreporter.write_line(f"figures written to {logs / 'chaos-figures.json'}; program logs in {logs}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        env = item.funcargs.get("chaos") if hasattr(item, "funcargs") else None
        if isinstance(env, ChaosEnv):
            report.sections.append(("program logs", env.stack.log_report(3000)))


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def profile() -> Profile:
    return profile_from_env()


@pytest.fixture(scope="session")
def logs_dir(pytestconfig: pytest.Config) -> Path:
    base = Path(os.environ.get("E2E_LOGS_DIR", REPO / "test-logs"))
    path = base / f"chaos-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    pytestconfig.stash[_LOGS] = path
    return path


@pytest.fixture(scope="session")
def figures(pytestconfig: pytest.Config, logs_dir: Path, profile: Profile) -> Callable[..., None]:
    """``figures(scenario, **values)``: print a scenario's figures now and in the final summary."""

    def report(scenario: str, **values: Any) -> None:
        entry = {"scenario": scenario, **values}
        pytestconfig.stash[_FIGURES].append(entry)
        _say(
            pytestconfig,
            f"\n[chaos {profile.name}] {scenario}: " + ", ".join(f"{k}={_format(v)}" for k, v in values.items()),
        )
        (logs_dir / "chaos-figures.json").write_text(json.dumps(pytestconfig.stash[_FIGURES], indent=2) + "\n")

    return report


@pytest.fixture(scope="session")
def chaos_redis(pytestconfig: pytest.Config) -> Iterator[ProvisionedRedis]:
    """A Redis of the suite's own, on a free port, with an AOF fsynced on every write; restartable."""
    with provision_redis(persistent=True, kinds=("redis-server", "embedded")) as provisioned:
        _say(pytestconfig, f"chaos Redis: kind={provisioned.kind} url={provisioned.url} (AOF, appendfsync always)")
        yield provisioned


@pytest.fixture(scope="session")
def simulator(logs_dir: Path) -> Iterator[SimulatorClient]:
    """The FileSpin simulator in its own process (it must not share the test driver's GIL under load)."""
    with run_simulator(in_process=False, log_path=logs_dir / "simulator.log") as client:
        yield client


@pytest.fixture(scope="session")
def fernet_key() -> str:
    return factory.new_fernet_key()


@dataclass
class ChaosEnv:
    """What every scenario works with."""

    redis: ProvisionedRedis
    sim: SimulatorClient
    stack: ServiceStack
    logs_dir: Path
    profile: Profile
    apikeys: list[str] = field(default_factory=list)  # every plaintext key used, for the secrets scan

    # The stack's settings, for the scenarios' bounds.
    addon_paths: ClassVar[tuple[str, ...]] = ADDON_PATHS
    trigger_concurrency: ClassVar[int] = TRIGGER_CONCURRENCY
    breaker_threshold: ClassVar[int] = BREAKER_THRESHOLD
    breaker_open_seconds: ClassVar[float] = BREAKER_OPEN_SECONDS
    http_read_timeout: ClassVar[float] = HTTP_READ_TIMEOUT
    max_retries: ClassVar[int] = MAX_RETRIES
    backoff: ClassVar[tuple[float, float]] = (BACKOFF_BASE, BACKOFF_CAP)

    def client(self) -> redis.Redis[bytes]:
        """A client on the suite's Redis."""
        return self.stack.redis()

    def dead_letters(self) -> DeadLetterStore:
        """The stack's dead-letter store."""
        return DeadLetterStore(self.client(), self.stack.keys, 1_000_000)

    def letters_for(self, event_ids: set[str]) -> list[DeadLetter]:
        """Dead letters of the given events."""
        return [letter for letter in self.dead_letters().iter() if letter.event_id in event_ids]

    def broker_state(self) -> dict[str, int]:
        """Messages waiting in each queue, fetched into a worker's in-flight list (common.broker), delivered
        but unacknowledged (kombu), and waiting for a retry."""
        client, settings = self.client(), self.stack.settings
        return {
            "process_queue": int(client.llen(settings.process_queue)),
            "trigger_queue": int(client.llen(settings.trigger_queue)),
            "inflight": sum(int(client.llen(name)) for name in client.zrange(INFLIGHT_INDEX_KEY, 0, -1)),
            "unacked": int(client.hlen(UNACKED)),
            "delayed": int(client.zcard(self.stack.keys.delayed)),
        }

    def idle(self) -> bool:
        """Nothing queued, delivered-and-unacknowledged, or waiting for a retry."""
        return not any(self.broker_state().values())

    def lost_messages(self, missing: list[tuple[str, str]], asset_events: dict[str, str]) -> dict[str, int]:
        """Classify missing (asset, addon) pairs once the service is idle: a ``process_asset`` message lost
        (no dedup mark: the event was never planned) or a ``trigger_addon`` message lost (marked sent, never done).
        """
        client, keys = self.client(), self.stack.keys
        lost_events: set[str] = set()
        lost_jobs = 0
        for asset_id, addon in missing:
            event_id = asset_events[asset_id]
            addon_key = addon.upper()
            if client.get(keys.dedup(event_id, addon_key)) is None:
                lost_events.add(event_id)
            elif not client.exists(keys.job_done(f"{event_id}:{addon_key}")):
                lost_jobs += 1
        return {"process_asset": len(lost_events), "trigger_addon": lost_jobs}

    def new_account(self) -> factory.Account:
        """A fresh user with :data:`ADDONS` on ``file-saved`` for images, loaded into the simulator."""
        settings = factory.user_settings(*(factory.addon(key, events=["file-saved"]) for key in ADDONS))
        account = factory.Account(settings=settings).load_into(self.sim)
        self.apikeys.append(account.apikey)
        return account

    def health_status(self) -> int | None:
        """The health API's ``/healthcheck`` status now (``None``: no answer)."""
        try:
            return httpx.get(f"{self.stack.api_url}/healthcheck", timeout=2.0).status_code
        except httpx.HTTPError:
            return None

    def ensure_healthy(self, timeout: float = 60.0) -> None:
        """Start any program that is not running, then wait (bounded) for a green health check."""
        if not self.redis.server or not self.redis.server.running:
            self.redis.start()
        for program in self.stack.programs:
            if not program.running:
                program.start(timeout)
        wait_until(lambda: self.health_status() == 200, timeout=timeout, interval=0.2, message="/healthcheck 200")

    def reset_simulator(self) -> None:
        """No outage, no script, no latency; forget recorded calls (users and assets stay)."""
        self.sim.clear_scripts()
        self.sim.addon_up("*")
        for addon in ADDON_PATHS:
            self.sim.addon_up(addon)
        self.sim.set_addon_default("*", latency=0.0)
        self.sim.configure(api_latency=0.0, hang_limit=30.0)
        self.sim.clear_calls()


@pytest.fixture(scope="session")
def chaos_session(
    pytestconfig: pytest.Config,
    chaos_redis: ProvisionedRedis,
    simulator: SimulatorClient,
    fernet_key: str,
    logs_dir: Path,
    profile: Profile,
) -> Iterator[ChaosEnv]:
    env = {
        "POSTPROCESS_REDIS_URL": chaos_redis.url,
        "POSTPROCESS_FILESPIN_API_URL": simulator.base_url,
        "POSTPROCESS_APIKEY_KEYS": fernet_key,
        **CHAOS_SETTINGS,
    }
    stack = ServiceStack(env, logs_dir=logs_dir, name=f"chaos-{uuid.uuid4().hex[:6]}")
    stack.start()
    _say(pytestconfig, f"chaos stack {stack.name} ready ({profile.name} run); logs in {logs_dir}")
    try:
        yield ChaosEnv(chaos_redis, simulator, stack, logs_dir, profile)
    finally:
        stack.stop()


@pytest.fixture
def chaos(chaos_session: ChaosEnv) -> ChaosEnv:
    """The session's environment, healthy, with the simulator back to normal."""
    chaos_session.reset_simulator()
    chaos_session.ensure_healthy()
    return chaos_session
