"""The six measurements of ``make bench`` and the table they make, sized by :class:`Sizes`."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from asset_post_process.devkit.bench.loadgen import ADDONS_PER_EVENT, Workload
from asset_post_process.devkit.bench.measure import percentile, redis_benchmark
from asset_post_process.devkit.bench.runner import UNLIMITED_RATE, Bench, LatencyResult, RunResult
from asset_post_process.devkit.bench.table import Row, ratio_verdict
from asset_post_process.devkit.launcher import settings_from_env
from asset_post_process.devkit.simulator import ASSET_DATA, SETTINGS

log = logging.getLogger(__name__)

TARGET_RATIO = 0.9


@dataclass(frozen=True)
class Sizes:
    """How many events each measurement uses (the defaults fit ``make bench`` in 10 minutes on 2 cores)."""

    events: int = 1500
    capped_events: int = 300
    backend_events: int = 1000
    latency_seconds: float = 15.0
    warmup_seconds: float = 3.0
    memory_events: int = 10_000
    addon_latency: float = 0.25
    redis_benchmark_requests: int = 100_000

    @classmethod
    def quick(cls) -> Sizes:
        """A tiny run: every code path, no meaningful figure (for tests and a first try)."""
        return cls(
            events=20,
            capped_events=10,
            backend_events=20,
            latency_seconds=2.0,
            warmup_seconds=0.5,
            memory_events=20,
            addon_latency=0.05,
            redis_benchmark_requests=2000,
        )


@dataclass
class Results:
    """Every figure of one bench run."""

    real: RunResult
    floor: RunResult
    capped: RunResult
    slow: RunResult
    two_workers: RunResult
    one_user: RunResult
    hundred_users: RunResult
    latency: LatencyResult
    memory: RunResult
    redis_ops: dict[str, float] | None
    default_rate_limit: float
    process_concurrency: int
    trigger_concurrency: int
    sizes: Sizes

    def as_json(self) -> dict[str, Any]:
        """The figures as JSON-ready data."""
        runs = {
            name: {
                "events": run.events,
                "seconds": round(run.seconds, 3),
                "events_per_second": round(run.events_per_second, 2),
                "counts": run.counts,
                "redis_commands_per_event": round(run.commands_per_event, 2),
                "redis_commands": run.redis_commands,
                "peak_rss_mib": {k: round(v, 1) for k, v in run.peak_rss_mib.items()},
                "cpu_seconds": {k: round(v, 2) for k, v in run.cpu_seconds.items()},
                "worker_cpu_ms_per_event": round(run.cpu_ms_per_event, 2),
                "redis_cpu_ms_per_event": round(run.redis_cpu_ms_per_event, 3),
            }
            for name, run in (
                ("real", self.real),
                ("floor", self.floor),
                ("capped", self.capped),
                ("slow_addons", self.slow),
                ("two_workers", self.two_workers),
                ("one_user", self.one_user),
                ("hundred_users", self.hundred_users),
                ("memory", self.memory),
            )
        }
        lat = self.latency.latencies
        return {
            "runs": runs,
            "latency": {
                "rate": round(self.latency.rate, 2),
                "events": self.latency.events,
                "p50_ms": round(percentile(lat, 50) * 1000, 1),
                "p95_ms": round(percentile(lat, 95) * 1000, 1),
                "p99_ms": round(percentile(lat, 99) * 1000, 1),
            },
            "redis_benchmark": self.redis_ops,
            "sizes": self.sizes.__dict__,
        }


def run_all(bench: Bench, sizes: Sizes) -> Results:
    """Run every measurement, in the order that keeps compared runs next to each other."""
    settings = settings_from_env(bench.base_env)
    shared = Workload.create(users=1, assets_per_user=50).load_into(bench.simulator)
    n = sizes.events
    real = bench.run_real("real", shared, n)
    floor = bench.run_floor(
        "floor",
        shared,
        n,
        process_concurrency=settings.process_concurrency,
        trigger_concurrency=settings.trigger_concurrency,
    )
    slow = bench.run_real("slow-addons", shared, n, addon_latency=sizes.addon_latency)
    two = bench.run_real("two-workers", shared, n, workers=2)
    capped = bench.run_real("capped", shared, sizes.capped_events, rate_limit=None)
    one_user = bench.run_real("one-user", Workload.create(1, 50).load_into(bench.simulator), sizes.backend_events)
    hundred = bench.run_real("hundred-users", Workload.create(100, 5).load_into(bench.simulator), sizes.backend_events)
    rate = max(1.0, real.events_per_second / 2)
    events = max(10, math.ceil(rate * sizes.latency_seconds))
    latency = bench.run_paced("latency", events, rate, warmup_events=max(5, math.ceil(rate * sizes.warmup_seconds)))
    memory = bench.run_real("memory", shared, sizes.memory_events, exact_span=False)
    port = bench.redis.port
    ops = redis_benchmark(port, requests=sizes.redis_benchmark_requests) if port else None
    return Results(
        real=real,
        floor=floor,
        capped=capped,
        slow=slow,
        two_workers=two,
        one_user=one_user,
        hundred_users=hundred,
        latency=latency,
        memory=memory,
        redis_ops=ops,
        default_rate_limit=settings.addon_rate_limit_per_second,
        process_concurrency=settings.process_concurrency,
        trigger_concurrency=settings.trigger_concurrency,
        sizes=sizes,
    )


def _eps(run: RunResult) -> str:
    return f"{run.events_per_second:.1f} events/s ({run.events} events in {run.seconds:.1f}s)"


def rows_of(r: Results) -> list[Row]:
    """The table of a bench run."""
    ratio1 = r.real.events_per_second / r.floor.events_per_second
    ratio2 = r.slow.events_per_second / r.real.events_per_second
    cpu1 = r.floor.cpu_ms_per_event / r.real.cpu_ms_per_event
    ratio6 = r.two_workers.events_per_second / r.real.events_per_second
    lat = r.latency.latencies
    ms = [percentile(lat, p) * 1000 for p in (50, 95, 99)]
    cpe = r.real.commands_per_event
    rows = [
        Row("1", "real pipeline (rate limit lifted)", _eps(r.real)),
        Row(
            "1",
            "bare Celery two-hop floor",
            _eps(r.floor) + f" [threads {r.process_concurrency}/{r.trigger_concurrency}]",
        ),
        Row("1", "efficiency real / floor", f"{ratio1:.2f} ({ratio_verdict(ratio1, TARGET_RATIO)})", ">= 0.9"),
        Row(
            "1",
            "worker CPU per event real / floor (efficiency floor / real)",
            f"{r.real.cpu_ms_per_event:.1f} / {r.floor.cpu_ms_per_event:.1f} ms ({cpu1:.2f})",
        ),
        Row(
            "1",
            f"real pipeline, default rate limit {r.default_rate_limit:g}/s per addon",
            _eps(r.capped) + " (the cap)",
        ),
        Row(
            "2",
            f"addon calls/s, addons answer after 0 ms / {r.sizes.addon_latency * 1000:.0f} ms",
            f"{r.real.events_per_second * ADDONS_PER_EVENT:.0f} / {r.slow.events_per_second * ADDONS_PER_EVENT:.0f}"
            f" (worker CPU {r.real.cpu_ms_per_event:.1f} / {r.slow.cpu_ms_per_event:.1f} ms per event)",
        ),
        Row("2", "latency hiding (slow / fast)", f"{ratio2:.2f} ({ratio_verdict(ratio2, TARGET_RATIO)})", ">= 0.9"),
        Row(
            "3",
            f"enqueue -> addon call at {r.latency.rate:.0f} events/s (50 % of max), {len(lat)} calls",
            f"p50 {ms[0]:.0f} ms, p95 {ms[1]:.0f} ms, p99 {ms[2]:.0f} ms",
        ),
        Row(
            "4",
            "settings / asset data calls per 1,000 events, 1 user",
            f"{r.one_user.per_thousand(SETTINGS):.1f} / {r.one_user.per_thousand(ASSET_DATA):.0f}",
        ),
        Row(
            "4",
            "settings / asset data calls per 1,000 events, 100 users",
            f"{r.hundred_users.per_thousand(SETTINGS):.1f} / {r.hundred_users.per_thousand(ASSET_DATA):.0f}",
        ),
    ]
    for program, mib in sorted(r.memory.peak_rss_mib.items()):
        rows.append(Row("5", f"peak RSS (VmHWM) {program} after {r.memory.events:,} events", f"{mib:.0f} MiB"))
    rows += [
        Row("6", "1 worker per kind", _eps(r.real)),
        Row("6", "2 workers per kind", _eps(r.two_workers) + f" (x{ratio6:.2f})"),
        Row(
            "6",
            "Redis commands per event (1 / 2 workers per kind)",
            f"{cpe:.1f} / {r.two_workers.commands_per_event:.1f}",
        ),
    ]
    if r.redis_ops:
        ops = sum(r.redis_ops.values()) / len(r.redis_ops)
        detail = ", ".join(f"{k} {v:,.0f}" for k, v in r.redis_ops.items())
        rows.append(Row("6", "redis-benchmark ops/s (50 clients, no pipelining)", f"{ops:,.0f} mean ({detail})"))
        rows.append(Row("6", "one Redis stops near (ops/s / commands per event)", f"{ops / cpe:,.0f} events/s"))
    redis_ms = r.real.redis_cpu_ms_per_event
    if redis_ms > 0:
        rows.append(
            Row(
                "6",
                "Redis CPU per event; one Redis core then stops near",
                f"{redis_ms:.2f} ms; {1000 / redis_ms:,.0f} events/s",
            )
        )
    return rows


__all__ = ["UNLIMITED_RATE", "Results", "Sizes", "rows_of", "run_all"]
