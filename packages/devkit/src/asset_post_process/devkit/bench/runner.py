"""The scenarios of ``make bench``, run one after another against one Redis and one simulator.

Each throughput run pre-fills its queue, then starts the workers and times, on the simulator's clock, from the
first asset data call to the last addon call, so start-up and enqueueing are not counted. The real pipeline
runs as :class:`~asset_post_process.devkit.launcher.ServiceStack` (the production worker programs); the floor
as :mod:`.floor` workers with the same pool and concurrency.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asset_post_process.common.redis_client import connect
from asset_post_process.common.settings import env_name
from asset_post_process.devkit import factory
from asset_post_process.devkit.bench import floor
from asset_post_process.devkit.bench.loadgen import (
    ADDONS_PER_EVENT,
    Workload,
    addon_call_latencies,
    send_all,
    send_paced,
    span_of_run,
    wait_for_addon_calls,
)
from asset_post_process.devkit.bench.measure import (
    command_calls,
    command_delta,
    cpu_seconds,
    peak_rss_mib,
    percentile,
)
from asset_post_process.devkit.launcher import CeleryWorker, ServiceStack, celery_worker, child_env
from asset_post_process.devkit.processes import ManagedProcess
from asset_post_process.devkit.redis_provision import ProvisionedRedis
from asset_post_process.devkit.simulator import SimulatorClient

log = logging.getLogger(__name__)

#: The per-addon rate limit of the throughput runs: high enough never to bind (the default, 25/s, would).
UNLIMITED_RATE = 1_000_000.0
_FLOOR_READY = "ready."


@dataclass
class RunResult:
    """One measured run."""

    name: str
    events: int
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    redis_commands: dict[str, int] = field(default_factory=dict)
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def cpu_ms_per_event(self) -> float:
        """CPU time of the worker programs (every process of each) per event, in milliseconds."""
        return sum(v for k, v in self.cpu_seconds.items() if k != "redis-server") * 1000.0 / self.events

    @property
    def redis_cpu_ms_per_event(self) -> float:
        """CPU time of the Redis server per event, in milliseconds."""
        return self.cpu_seconds.get("redis-server", 0.0) * 1000.0 / self.events

    @property
    def events_per_second(self) -> float:
        """Events through the pipeline per second."""
        return self.events / self.seconds

    @property
    def commands_per_event(self) -> float:
        """Redis commands per event (every client: producer, workers, pumps, heartbeats)."""
        return sum(self.redis_commands.values()) / self.events

    def per_thousand(self, endpoint: str) -> float:
        """Calls of ``endpoint`` per 1,000 events."""
        return self.counts.get(endpoint, 0) * 1000.0 / self.events


@dataclass
class LatencyResult:
    """Enqueue-to-addon-call latencies of a paced run."""

    rate: float
    events: int
    latencies: list[float]


class Bench:
    """Runs the scenarios; ``logs_dir`` keeps every worker's log."""

    def __init__(
        self,
        redis: ProvisionedRedis,
        simulator: SimulatorClient,
        logs_dir: Path,
        *,
        extra_env: Mapping[str, str] | None = None,
        run_timeout: float = 300.0,
    ) -> None:
        self.redis = redis
        self.simulator = simulator
        self.logs_dir = logs_dir
        self.fernet_key = factory.new_fernet_key()
        self.messages = factory.MessageFactory([self.fernet_key])
        self.run_timeout = run_timeout
        self.base_env: dict[str, str] = {
            env_name("redis_url"): redis.url,
            env_name("filespin_api_url"): simulator.base_url,
            env_name("apikey_keys"): self.fernet_key,
            env_name("log_level"): "INFO",
            **(extra_env or {}),
        }
        self._redis_client = connect(redis.url)

    # ------------------------------------------------------------------ simulator
    def prepare_simulator(self, addon_latency: float) -> None:
        """Forget earlier calls; addons answer 200 after ``addon_latency`` seconds and never mark the asset."""
        self.simulator.clear_calls()
        self.simulator.configure(mark_processed=False)
        self.simulator.set_addon_default("*", latency=addon_latency)

    # ------------------------------------------------------------------ the real pipeline
    def stack(self, name: str, *, rate_limit: float | None = UNLIMITED_RATE) -> ServiceStack:
        """A service stack (no health API) of its own queues and key prefix."""
        env = dict(self.base_env)
        if rate_limit is not None:
            env[env_name("addon_rate_limit_per_second")] = str(rate_limit)
        unique = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        return ServiceStack(env, logs_dir=self.logs_dir, name=unique, with_api=False)

    def run_real(
        self,
        name: str,
        workload: Workload,
        events: int,
        *,
        workers: int = 1,
        rate_limit: float | None = UNLIMITED_RATE,
        addon_latency: float = 0.0,
        exact_span: bool = True,
    ) -> RunResult:
        """``events`` through the real pipeline with ``workers`` process and trigger worker programs each."""
        self.prepare_simulator(addon_latency)
        stack = self.stack(name, rate_limit=rate_limit)
        extra: list[CeleryWorker] = []
        for index in range(1, workers):
            for kind in ("process", "trigger"):
                log_path = self.logs_dir / f"{stack.name}-{kind}-worker-{index + 1}.log"
                extra.append(celery_worker(kind, stack.env, log_path))
        before = command_calls(self._redis_client)
        send_all(stack.producer().send_message, workload.real_messages(events, self.messages))
        try:
            return self._drain(name, events, [*stack.programs, *extra], exact_span, before)
        finally:
            for worker in extra:
                worker.stop()
            stack.stop()

    # ------------------------------------------------------------------ the floor
    def floor_workers(self, name: str, process_concurrency: int, trigger_concurrency: int) -> list[ManagedProcess]:
        """Hop-1 and hop-2 workers of the floor, with the service's pool and concurrency."""
        unique = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        env = child_env(
            {
                "BENCH_FLOOR_BROKER_URL": self.redis.url,
                "BENCH_FLOOR_API_URL": self.simulator.base_url,
                "BENCH_FLOOR_HOP1_QUEUE": f"{unique}.hop1",
                "BENCH_FLOOR_HOP2_QUEUE": f"{unique}.hop2",
            }
        )
        programs: list[ManagedProcess] = []
        for hop, concurrency in (("hop1", process_concurrency), ("hop2", trigger_concurrency)):
            command = [
                *(sys.executable, "-m", "celery", "-A", floor.__name__, "worker"),
                *("-Q", env[f"BENCH_FLOOR_{hop.upper()}_QUEUE"], "-n", f"{unique}-{hop}@bench"),
                *("-P", "threads", "-c", str(concurrency), "--loglevel", "INFO"),
                *("--without-mingle", "--without-gossip"),
            ]
            programs.append(
                ManagedProcess(f"floor-{hop}", command, env, self.logs_dir / f"{unique}-{hop}.log", _floor_ready)
            )
        return programs

    def run_floor(
        self,
        name: str,
        workload: Workload,
        events: int,
        *,
        process_concurrency: int,
        trigger_concurrency: int,
        addon_latency: float = 0.0,
    ) -> RunResult:
        """``events`` through the bare two-hop pipeline."""
        self.prepare_simulator(addon_latency)
        programs = self.floor_workers(name, process_concurrency, trigger_concurrency)
        hop1_queue = programs[0].env["BENCH_FLOOR_HOP1_QUEUE"]
        hop2_queue = programs[0].env["BENCH_FLOOR_HOP2_QUEUE"]
        app = floor.make_floor_app(self.redis.url, hop1_queue, hop2_queue)
        before = command_calls(self._redis_client)

        def send(message: dict[str, Any]) -> None:
            app.send_task(floor.HOP1_TASK, args=[message], queue=hop1_queue)

        send_all(send, workload.floor_messages(events))
        app.close()
        try:
            return self._drain(name, events, programs, True, before)
        finally:
            for program in programs:
                program.stop()

    # ------------------------------------------------------------------ shared
    def _drain(
        self,
        name: str,
        events: int,
        programs: list[ManagedProcess],
        exact_span: bool,
        before: dict[str, int],
    ) -> RunResult:
        """Start ``programs`` on the pre-filled queue, wait for every addon call, read the figures."""
        started = time.monotonic()
        for program in programs:
            program.start(wait=False)
        for program in programs:
            program.wait_ready(60)
        cpu_before = self._cpu(programs)
        self._wait(name, events * ADDONS_PER_EVENT)
        polled = time.monotonic() - started
        cpu_after = self._cpu(programs)
        counts = self.simulator.counts()
        commands = command_delta(before, command_calls(self._redis_client))
        rss: dict[str, float] = {}
        for program in programs:
            if program.pid is not None:
                peaks = peak_rss_mib(program.pid)
                rss[program.name] = max(rss.get(program.name, 0.0), sum(peaks.values()))
        seconds = span_of_run(self.simulator).seconds if exact_span else polled
        cpu = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}
        result = RunResult(name, events, seconds, counts, commands, rss, cpu)
        log.info(
            "%s: %d events in %.2fs = %.1f events/s, %.2f worker CPU ms/event",
            name,
            events,
            seconds,
            result.events_per_second,
            result.cpu_ms_per_event,
        )
        return result

    def _cpu(self, programs: list[ManagedProcess]) -> dict[str, float]:
        """CPU seconds so far of each program kind (summed over programs of one name) and of the Redis server."""
        cpu: dict[str, float] = {}
        for program in programs:
            if program.pid is not None:
                cpu[program.name] = cpu.get(program.name, 0.0) + cpu_seconds(program.pid)
        server = self.redis.server
        if server is not None and server.pid is not None:
            cpu["redis-server"] = cpu_seconds(server.pid)
        return cpu

    def run_paced(self, name: str, events: int, rate: float, *, warmup_events: int = 0) -> LatencyResult:
        """``events`` sent at ``rate`` per second into a running real pipeline, one fresh asset each.

        ``warmup_events`` go first, at the same rate, and are not measured: the workers' first tasks build their
        clients and connections (about a second on this machine), which is start-up, not steady state.
        """
        self.prepare_simulator(0.0)
        workload = Workload.create(1, warmup_events + events).load_into(self.simulator)
        messages = workload.real_messages(warmup_events + events, self.messages)
        stack = self.stack(name)
        with stack:
            send = stack.producer().send_message
            if warmup_events:
                send_paced(send, messages[:warmup_events], rate)
                self._wait(name, warmup_events * ADDONS_PER_EVENT)
                self.simulator.clear_calls()
            sent_at = send_paced(send, messages[warmup_events:], rate)
            self._wait(name, events * ADDONS_PER_EVENT)
            latencies = addon_call_latencies(self.simulator, sent_at)
        log.info(
            "%s: %d events at %.1f/s, p50 %.0f ms, p99 %.0f ms",
            name,
            events,
            rate,
            percentile(latencies, 50) * 1000,
            percentile(latencies, 99) * 1000,
        )
        return LatencyResult(rate, events, latencies)

    def _wait(self, name: str, expected: int) -> None:
        if not wait_for_addon_calls(self.simulator, expected, timeout=self.run_timeout):
            raise RuntimeError(
                f"{name}: fewer than {expected} addon calls after {self.run_timeout}s; see {self.logs_dir}"
            )


def _floor_ready(process: ManagedProcess) -> bool:
    return _FLOOR_READY in process.read_log(since_start=True)
