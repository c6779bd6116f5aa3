"""Benchmark: addon calls per second of a real trigger worker, per Celery pool and concurrency.

    .tools/bin/hatch run python packages/trigger-worker/bench/pools.py --jobs 400 --latency 0.2 \
        --pools threads:8,threads:32,threads:64,prefork:2,prefork:8

For each pool, a real ``celery worker`` process (the production app, ``asset_post_process.trigger_worker.app``)
is started against a Redis of its own and the FileSpin simulator (in its own process, so it does not share
the benchmark's GIL) whose addons answer after ``--latency`` seconds. ``--jobs`` trigger jobs are enqueued at
once and the clock runs until the simulator has answered every call. The per-addon rate limit is lifted
(``--rate``) unless asked otherwise, so what is measured is the pool, not the limiter.

Not shipped in the wheel (the wheel packages ``src/`` only); the devkit is a development dependency.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet

from asset_post_process.common.celeryapp import make_producer
from asset_post_process.common.contract import TRIGGER_ADDON_TASK
from asset_post_process.common.crypto import ApiKeyCipher
from asset_post_process.common.settings import load_settings
from asset_post_process.devkit.ports import wait_for
from asset_post_process.devkit.redis_provision import provision_redis
from asset_post_process.devkit.simulator import SimulatorClient, run_simulator

ADDONS = ("SCENE_CLASSIFICATION", "EMOTION_RECOGNITION", "FACE_RECOGNITION")
PLAIN_KEY = "bench-key-0001"


@dataclass(frozen=True)
class Figure:
    """One measured configuration."""

    pool: str
    concurrency: int
    jobs: int
    seconds: float
    worker_rss_mb: float
    load_average: float

    @property
    def calls_per_second(self) -> float:
        return self.jobs / self.seconds


def _rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children (prefork), in MiB, from /proc."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _addon_calls(sim: SimulatorClient, since: int = 0) -> int:
    """Addon calls the simulator has received (every addon)."""
    return sum(n for endpoint, n in sim.counts(since=since).items() if endpoint.startswith("addon:"))


def run_one(
    pool: str,
    concurrency: int,
    *,
    jobs: int,
    latency: float,
    redis_url: str,
    sim: SimulatorClient,
    fernet_key: str,
    rate: float,
    addons: int = 1,
) -> Figure:
    """Start a worker with ``pool``/``concurrency``, push ``jobs`` jobs, time until all calls are answered."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    queue = f"bench-trigger-{prefix}"
    env = {
        **os.environ,
        "POSTPROCESS_REDIS_URL": redis_url,
        "POSTPROCESS_APIKEY_KEYS": fernet_key,
        "POSTPROCESS_FILESPIN_API_URL": sim.base_url,
        "POSTPROCESS_KEY_PREFIX": prefix,
        "POSTPROCESS_TRIGGER_QUEUE": queue,
        "POSTPROCESS_TRIGGER_POOL": pool,
        "POSTPROCESS_TRIGGER_CONCURRENCY": str(concurrency),
        "POSTPROCESS_ADDON_RATE_LIMIT_PER_SECOND": str(rate),
        "POSTPROCESS_HTTP_MAX_CONNECTIONS": str(max(100, concurrency)),
        "POSTPROCESS_LOG_LEVEL": "WARNING",
    }
    settings = load_settings(
        redis_url=redis_url, apikey_keys=fernet_key, trigger_queue=queue, filespin_api_url=sim.base_url
    )
    producer = make_producer(settings)
    cipher = ApiKeyCipher([fernet_key])
    sim.reset()
    sim.put_user(PLAIN_KEY, {"addons": {}})
    sim.configure(mark_processed=False)
    sim.set_addon_default("*", latency=latency)
    assets = [uuid.uuid4().hex for _ in range(jobs + 1)]
    for asset_id in assets:
        sim.put_asset(PLAIN_KEY, {"id": asset_id, "content_type": "image/jpeg", "data": {}})

    def job(n: int, asset_id: str) -> dict[str, object]:
        event_id = f"bench-{uuid.uuid4().hex[:12]}"
        addon = ADDONS[n % addons]
        return {
            "job_id": f"{event_id}:{addon}",
            "event_id": event_id,
            "asset_id": asset_id,
            "addon": addon,
            "action": "process",
            "apikey": cipher.encrypt(PLAIN_KEY),
            "disposition": {},
        }

    messages = [job(n, a) for n, a in enumerate(assets)]
    log = tempfile.NamedTemporaryFile(prefix=f"bench-{pool}-{concurrency}-", suffix=".log", delete=False)  # noqa: SIM115
    command = [
        sys.executable, "-m", "celery", "-A", "asset_post_process.trigger_worker.app", "worker",
        "-Q", queue, "-n", f"{prefix}@bench", "--without-gossip", "--without-mingle", "-l", "WARNING",
    ]  # fmt: skip
    if pool in ("gevent", "eventlet"):
        # These must be chosen on the command line so their monkey-patching happens before any import;
        # threads and prefork are taken from the settings, exactly as deployed.
        command += ["-P", pool]
    worker = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # noqa: S603
    try:
        # Warm-up: one job through the whole path (imports, connections, first TLS-free handshake).
        producer.send_task(TRIGGER_ADDON_TASK, args=[messages[0]], queue=queue)
        if not wait_for(lambda: _addon_calls(sim) >= 1, timeout=60, interval=0.1):
            raise RuntimeError(f"worker {pool}:{concurrency} did not start; see {log.name}")
        time.sleep(1.0)  # let every pool process/thread come up before the clock starts
        base = sim.last_seq()
        started = time.perf_counter()
        for message in messages[1:]:
            producer.send_task(TRIGGER_ADDON_TASK, args=[message], queue=queue)
        done = wait_for(lambda: _addon_calls(sim, base) >= jobs, timeout=600, interval=0.05)
        elapsed = time.perf_counter() - started
        rss = _rss_mb(worker.pid)
        load = os.getloadavg()[0]
        if not done:
            raise RuntimeError(f"only {_addon_calls(sim, base)} of {jobs} calls in 600 s")
        return Figure(pool, concurrency, jobs, elapsed, rss, load)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
        producer.close()


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, measure each pool, print a table (and JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pools", default="threads:8,threads:32,threads:64,prefork:2,prefork:8")
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.2, help="simulated addon latency, seconds")
    parser.add_argument("--rate", type=float, default=100_000.0, help="per-addon rate limit (default: lifted)")
    parser.add_argument("--addons", type=int, default=1, choices=(1, 2, 3), help="spread jobs over N addons")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)
    fernet_key = Fernet.generate_key().decode()
    figures: list[Figure] = []
    with provision_redis(kinds=("redis-server", "embedded")) as redis, run_simulator(in_process=False) as sim:
        for spec in args.pools.split(","):
            pool, _, concurrency = spec.partition(":")
            figure = run_one(
                pool,
                int(concurrency),
                jobs=args.jobs,
                latency=args.latency,
                redis_url=redis.url,
                sim=sim,
                fernet_key=fernet_key,
                rate=args.rate,
                addons=args.addons,
            )
            figures.append(figure)
            print(
                f"{figure.pool:>8} c={figure.concurrency:<4} {figure.jobs} calls in {figure.seconds:6.2f} s"
                f" = {figure.calls_per_second:7.1f} calls/s  (ideal {figure.concurrency / args.latency:6.1f});"
                f" worker RSS {figure.worker_rss_mb:6.1f} MiB; load average {figure.load_average:.1f}",
                flush=True,
            )
    if args.json:
        print(json.dumps([{**f.__dict__, "calls_per_second": f.calls_per_second} for f in figures], indent=2))


if __name__ == "__main__":
    main()
