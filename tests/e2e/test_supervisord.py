"""The real supervisord.conf on the host, started the way the image starts it (``docker/entrypoint.py``).

No Docker: the session's Redis and FileSpin simulator (tests/e2e/conftest.py), and supervisord running the real
programs (gunicorn health API, both Celery workers) plus the FATAL listener. The control socket, pid file and
FATAL marker live in a private directory; the API binds a free loopback port; each stack has its own key prefix.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
import xmlrpc.client
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
from supervisor.xmlrpc import SupervisorTransport  # type: ignore[import-untyped]

from asset_post_process.common.celeryapp import make_producer
from asset_post_process.common.producer import EventProducer
from asset_post_process.common.settings import Settings, load_settings
from asset_post_process.devkit import factory
from asset_post_process.devkit.ports import free_port, wait_for
from asset_post_process.devkit.simulator import SimulatorClient, Step

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO / "docker" / "entrypoint.py"
HEALTHCHECK = REPO / "docker" / "healthcheck.py"
CONFIG = REPO / "supervisord.conf"
PROGRAMS = ("process-worker", "trigger-worker", "health-api")
LISTENER = "fatal-exit"
STOPWAITSECS = 75  # supervisord.conf's longest stopwaitsecs: bounds how long a graceful stop may take
START_TIMEOUT = 60.0
ADDON = "FACE_RECOGNITION"


# --------------------------------------------------------------------------------------------------- helpers
class Stack:
    """``python docker/entrypoint.py supervisord.conf`` as a child process, with an XML-RPC view of supervisord."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.run_dir = Path(env["POSTPROCESS_RUN_DIR"])
        self.process: subprocess.Popen[bytes] | None = None
        self.program_pids: dict[str, int] = {}

    def start(self) -> Stack:
        """Start the entrypoint (which starts supervisord)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(ENTRYPOINT), str(CONFIG)],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rpc(self) -> Any:
        """supervisord's XML-RPC interface over its unix socket."""
        transport = SupervisorTransport(None, None, f"unix://{self.run_dir / 'supervisor.sock'}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def states(self) -> dict[str, str]:
        """Program name -> supervisord state name (empty while supervisord does not answer)."""
        try:
            infos = self.rpc().getAllProcessInfo()
        except (OSError, xmlrpc.client.Error):
            return {}
        for info in infos:
            if info["pid"]:
                self.program_pids[info["name"]] = info["pid"]
        return {info["name"]: info["statename"] for info in infos}

    def wait_running(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the three programs and the listener are RUNNING."""
        wanted = {*PROGRAMS, LISTENER}

        def up() -> bool:
            states = self.states()
            return wanted <= states.keys() and all(states[name] == "RUNNING" for name in wanted)

        if not wait_for(up, timeout=timeout, interval=0.2):
            raise AssertionError(f"programs not RUNNING: {self.states()}\n{self.log_tail()}")

    def wait_exit(self, timeout: float) -> int:
        """Wait for the entrypoint to exit; its exit code."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the entrypoint did not exit within {timeout}s\n{self.log_tail()}") from None

    def alive_programs(self) -> list[str]:
        """Programs whose process group (supervisord gives each its own) still has a process."""
        alive = []
        for name, pid in self.program_pids.items():
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                continue
            alive.append(name)
        return alive

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_text()[-chars:]

    def kill(self) -> None:
        """Leave nothing behind: SIGKILL the entrypoint's session and every program's process group."""
        if self.process is not None and self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        for pid in self.program_pids.values():
            with suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


class Deployment:
    """What one test needs around its stacks: the session's Redis and simulator (conftest), a run dir, a port."""

    def __init__(self, exit_stack: ExitStack, base_env: dict[str, str], sim: SimulatorClient, logs_dir: Path) -> None:
        self._exit = exit_stack
        self.base_env = base_env
        self.simulator = sim
        self.logs_dir = logs_dir
        self.health_port = free_port()
        # A short private directory: a unix socket path must stay under ~100 bytes.
        self.run_dir = Path(tempfile.mkdtemp(prefix="pp-sv-"))
        exit_stack.callback(shutil.rmtree, self.run_dir, ignore_errors=True)
        self.prefix = f"sv{uuid.uuid4().hex[:8]}"
        self.extra: dict[str, str] = {}

    def env(self, **overrides: str) -> dict[str, str]:
        """The stack's environment: this process's (minus any POSTPROCESS_*), the session's service env, the test's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSTPROCESS_")}
        env.update(self.base_env)
        env.update(
            POSTPROCESS_KEY_PREFIX=self.prefix,
            POSTPROCESS_HEALTH_BIND=f"127.0.0.1:{self.health_port}",
            POSTPROCESS_HEALTH_WORKERS="1",
            POSTPROCESS_RUN_DIR=str(self.run_dir),
        )
        env.update(self.extra)
        env.update(overrides)
        return env

    def stack(self, name: str, **overrides: str) -> Stack:
        """A started stack; killed (if still running) when the test ends. Its log stays in ``logs_dir``."""
        stack = Stack(self.env(**overrides), self.logs_dir / f"supervisord-{self.prefix}-{name}.log")
        self._exit.callback(stack.kill)
        return stack.start()

    def settings(self) -> Settings:
        """The stack's settings, as the programs read them (queues: the service's defaults unless overridden)."""
        env = self.env()
        overrides = {
            field: env[name]
            for field, name in (
                ("process_queue", "POSTPROCESS_PROCESS_QUEUE"),
                ("trigger_queue", "POSTPROCESS_TRIGGER_QUEUE"),
            )
            if name in env
        }
        return load_settings(
            Settings,
            redis_url=env["POSTPROCESS_REDIS_URL"],
            apikey_keys=env["POSTPROCESS_APIKEY_KEYS"],
            key_prefix=env["POSTPROCESS_KEY_PREFIX"],
            **overrides,
        )

    def producer(self) -> EventProducer:
        """A producer with the stack's broker, keys and queue (what the FileSpin backend uses)."""
        producer = EventProducer.from_settings(self.settings())
        self._exit.callback(producer.close)
        return producer

    def control(self) -> Any:
        """Celery remote control over the stack's broker."""
        app = make_producer(self.settings())
        self._exit.callback(app.close)
        return app.control

    def health_status(self) -> int:
        """The status of GET /healthcheck (0 when nothing answers)."""
        try:
            return httpx.get(f"http://127.0.0.1:{self.health_port}/healthcheck", timeout=2).status_code
        except httpx.HTTPError:
            return 0

    def add_user_with_assets(self, count: int, *, addon_latency: float = 0.0) -> tuple[str, list[str]]:
        """A user with face recognition on for ``file-saved`` images, and ``count`` image assets."""
        account = factory.Account(settings=factory.user_settings(factory.addon(ADDON, events=["file-saved"])))
        for _ in range(count):
            asset = account.add(factory.image_asset())
            if addon_latency:
                self.simulator.script_addon(asset["id"], ADDON, Step(200, latency=addon_latency))
        account.load_into(self.simulator)
        return account.apikey, [str(asset["id"]) for asset in account.assets]

    def answered(self, asset_ids: list[str]) -> set[str]:
        """The assets whose addon call was answered 200."""
        wanted = set(asset_ids)
        return {
            c.asset_id
            for c in self.simulator.calls(addon=ADDON)
            if c.asset_id in wanted and c.outcome != "pending" and c.status == 200
        }


@pytest.fixture
def deployment(service_env: dict[str, str], sim: SimulatorClient, logs_dir: Path) -> Iterator[Deployment]:
    with ExitStack() as exit_stack:
        yield Deployment(exit_stack, service_env, sim, logs_dir)


@pytest.fixture(scope="module")
def running(
    service_env: dict[str, str], simulator: SimulatorClient, logs_dir: Path
) -> Iterator[tuple[Deployment, Stack]]:
    """One stack shared by the tests that only look at a running stack (starting one takes startsecs, 10 s)."""
    with ExitStack() as exit_stack:
        deployment = Deployment(exit_stack, service_env, simulator, logs_dir)
        stack = deployment.stack("up", POSTPROCESS_PROCESS_CONCURRENCY="2", POSTPROCESS_TRIGGER_CONCURRENCY="3")
        stack.wait_running()
        yield deployment, stack


# --------------------------------------------------------------------------------------------------- tests
def test_a_bad_setting_stops_the_entrypoint_before_supervisord(deployment: Deployment) -> None:
    env = deployment.env(POSTPROCESS_APIKEY_KEYS="not-a-fernet-key")
    result = subprocess.run(
        [sys.executable, str(ENTRYPOINT), str(CONFIG)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 3
    assert "POSTPROCESS_APIKEY_KEYS" in result.stderr
    assert "not-a-fernet-key" not in result.stderr + result.stdout  # the bad value is never echoed
    assert not (deployment.run_dir / "supervisord.pid").exists()  # supervisord never started


def test_all_programs_come_up_and_the_healthcheck_answers_200(running: tuple[Deployment, Stack]) -> None:
    deployment, stack = running
    assert set(stack.states()) == {*PROGRAMS, LISTENER}
    assert wait_for(lambda: deployment.health_status() == 200, timeout=START_TIMEOUT, interval=0.25), stack.log_tail()

    # The container's probe (Dockerfile HEALTHCHECK, stack.yml) agrees.
    probe = subprocess.run([sys.executable, str(HEALTHCHECK)], env=stack.env, capture_output=True, timeout=30)
    assert probe.returncode == 0, probe.stderr

    # Each worker consumes its own queue (the -Q the entrypoint filled in) with the concurrency of its setting.
    control = deployment.control()
    nodes = {kind: f"{kind}@{socket.gethostname()}" for kind in ("process", "trigger")}  # supervisord.conf's -n
    inspect = control.inspect(destination=list(nodes.values()), timeout=5)
    replies: dict[str, dict[str, Any]] = {}

    def both_replied() -> bool:  # a busy machine can miss one broadcast's reply window: ask again
        replies["stats"] = inspect.stats() or {}
        replies["queues"] = inspect.active_queues() or {}
        return replies["stats"].keys() == replies["queues"].keys() == set(nodes.values())

    assert wait_for(both_replied, timeout=60, interval=0.5), replies
    stats, queues = replies["stats"], replies["queues"]
    assert stats[nodes["process"]]["pool"]["max-concurrency"] == 2
    assert stats[nodes["trigger"]]["pool"]["max-concurrency"] == 3
    assert [q["name"] for q in queues[nodes["process"]]] == ["filespin-asset-post-process"]
    assert [q["name"] for q in queues[nodes["trigger"]]] == ["taskq_filespin-trigger-addon.service"]

    # The probe fails when nothing answers on the API's address.
    probe_elsewhere = {**stack.env, "POSTPROCESS_HEALTH_BIND": f"127.0.0.1:{free_port()}"}
    probe = subprocess.run([sys.executable, str(HEALTHCHECK)], env=probe_elsewhere, capture_output=True, timeout=30)
    assert probe.returncode == 1


def test_an_event_flows_end_to_end(running: tuple[Deployment, Stack], sim: SimulatorClient) -> None:
    deployment, stack = running  # `sim` is the same simulator the stack calls, emptied for this test
    apikey, (asset_id,) = deployment.add_user_with_assets(1)

    deployment.producer().enqueue_asset_event(apikey=apikey, asset_id=asset_id, event_type="file-saved")

    calls = deployment.simulator.wait_for_calls(1, asset_id=asset_id, addon=ADDON, timeout=60)
    assert [c.status for c in calls] == [200], stack.log_tail()
    assert calls[0].header("X-FileSpin-Api-Key") == apikey  # decrypted in the worker, sent to FileSpin only


def test_sigterm_stops_everything_gracefully_and_no_task_is_lost(deployment: Deployment) -> None:
    # Own queue names: the -Q of each worker comes from these variables, and so do the producer's routes.
    deployment.extra = {
        "POSTPROCESS_PROCESS_QUEUE": f"{deployment.prefix}-process",
        "POSTPROCESS_TRIGGER_QUEUE": f"{deployment.prefix}-trigger",
        "POSTPROCESS_TRIGGER_CONCURRENCY": "2",
    }
    first = deployment.stack("first")
    first.wait_running()
    apikey, assets = deployment.add_user_with_assets(6, addon_latency=3.0)
    producer = deployment.producer()
    for asset_id in assets:
        producer.enqueue_asset_event(apikey=apikey, asset_id=asset_id, event_type="file-saved")

    def in_flight() -> list[int]:
        return [c.seq for c in deployment.simulator.calls(addon=ADDON) if c.outcome == "pending"]

    assert wait_for(lambda: bool(in_flight()), timeout=60, interval=0.1), first.log_tail()
    pending_at_term = in_flight()
    first.states()  # record every program's pid before the stop

    os.kill(first.pid, signal.SIGTERM)  # what `docker stop` does to PID 1
    code = first.wait_exit(timeout=STOPWAITSECS + 30)

    assert code == 0, first.log_tail()
    assert first.alive_programs() == []
    log = first.log_text()
    assert "Warm shutdown" in log
    # The calls in flight when TERM arrived were finished, not cut off.
    finished = {c.seq: c for c in deployment.simulator.calls(addon=ADDON)}
    assert all(finished[seq].outcome != "pending" and finished[seq].status == 200 for seq in pending_at_term)

    # Whatever was still queued is processed after a restart on the same Redis: every asset gets its call.
    assert deployment.answered(assets) != set(assets)  # some work was still queued: the restart has a job to do
    second = deployment.stack("second")
    second.wait_running()
    assert wait_for(lambda: deployment.answered(assets) == set(assets), timeout=120, interval=0.25), (
        f"answered {len(deployment.answered(assets))} of {len(assets)}\n{second.log_tail()}"
    )


def test_a_program_that_cannot_start_makes_the_container_exit_non_zero(deployment: Deployment) -> None:
    # A setting only the health API reads: it exits at once, every time, and goes FATAL; the workers are fine.
    stack = deployment.stack("fatal", POSTPROCESS_HEALTH_WORKERS="0")
    # Record the workers' pids while they run, to check below that the shutdown took them down too.
    workers = {"process-worker", "trigger-worker"}
    assert wait_for(lambda: bool(stack.states()) and workers <= stack.program_pids.keys(), timeout=START_TIMEOUT)

    code = stack.wait_exit(timeout=START_TIMEOUT + STOPWAITSECS)

    assert code == 1
    log = stack.log_text()
    assert "health-api entered FATAL state" in log
    assert "program(s) not kept running: postprocess:health-api" in log
    assert "POSTPROCESS_HEALTH_WORKERS" in log  # the program's own error names the variable
    assert stack.alive_programs() == []


def test_a_program_that_keeps_crashing_makes_the_container_exit_non_zero(deployment: Deployment) -> None:
    # The trigger worker starts fine, then dies (SIGKILL: what an out-of-memory kill looks like) twice in a row.
    stack = deployment.stack("crashloop", POSTPROCESS_CRASH_LIMIT="2")
    stack.wait_running()
    killed: list[int] = []

    def running_again() -> bool:  # RUNNING under a new pid: supervisord restarted it after the last crash
        return stack.states().get("trigger-worker") == "RUNNING" and stack.program_pids["trigger-worker"] not in killed

    for _ in range(2):
        assert wait_for(running_again, timeout=START_TIMEOUT, interval=0.2), stack.log_tail()
        pid = stack.program_pids["trigger-worker"]
        os.killpg(pid, signal.SIGKILL)
        killed.append(pid)

    code = stack.wait_exit(timeout=START_TIMEOUT + STOPWAITSECS)

    assert code == 1
    log = stack.log_text()
    assert "postprocess:trigger-worker crashed 2 times" in log
    assert "program(s) not kept running: postprocess:trigger-worker" in log
    assert stack.alive_programs() == []
