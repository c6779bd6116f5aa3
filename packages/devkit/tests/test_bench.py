"""The bench's parts on a tiny run: the load generator, the real and the floor pipelines, the figures and the table.

Real Redis, real worker processes, the simulator over real HTTP. Nothing here asserts on time: only that every
event made its calls and that each figure was read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asset_post_process.devkit.bench.loadgen import ADDONS_PER_EVENT, Workload, addon_calls
from asset_post_process.devkit.bench.measure import command_delta, cpu_seconds, peak_rss_mib, percentile
from asset_post_process.devkit.bench.runner import Bench, LatencyResult, RunResult
from asset_post_process.devkit.bench.scenarios import Results, Sizes, rows_of
from asset_post_process.devkit.bench.table import Row, ratio_verdict, render_markdown, render_text
from asset_post_process.devkit.redis_provision import provision_redis
from asset_post_process.devkit.simulator import ASSET_DATA, SETTINGS, run_simulator

EVENTS = 6


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    logs = Path(tmp_path_factory.mktemp("bench-logs"))
    with provision_redis(kinds=("redis-server", "embedded")) as redis, run_simulator() as simulator:
        yield Bench(redis, simulator, logs, run_timeout=90)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 95) == 3.0
    assert percentile([], 50) != percentile([], 50)  # nan


def test_command_delta_keeps_what_grew() -> None:
    assert command_delta({"get": 5, "set": 1}, {"get": 9, "set": 1, "lpush": 2}) == {"get": 4, "lpush": 2}


def test_this_process_has_a_peak_rss_and_cpu_time() -> None:
    peaks = peak_rss_mib(os.getpid())
    assert peaks[os.getpid()] > 1
    assert cpu_seconds(os.getpid()) > 0


def test_workload_spreads_events_over_users_and_assets() -> None:
    workload = Workload.create(users=3, assets_per_user=2)
    targets = [workload.target(i) for i in range(12)]
    assert len({apikey for apikey, _ in targets}) == 3
    assert len({asset["id"] for _, asset in targets}) == 6
    floor = workload.floor_messages(4)
    assert [m["asset_id"] for m in floor] == [str(workload.target(i)[1]["id"]) for i in range(4)]


def test_real_messages_are_valid_and_distinct(bench: Bench) -> None:
    messages = Workload.create(1, 1).real_messages(5, bench.messages)
    assert len({m["event_id"] for m in messages}) == 5
    assert all(m["event_type"] == "file-saved" and m["apikey"] != "" for m in messages)


def test_real_pipeline_makes_every_call_and_reads_its_figures(bench: Bench) -> None:
    workload = Workload.create(1, 2).load_into(bench.simulator)
    result = bench.run_real("test-real", workload, EVENTS)
    counts = bench.simulator.counts()
    assert addon_calls(counts) == EVENTS * ADDONS_PER_EVENT
    assert counts[ASSET_DATA] == EVENTS
    assert 1 <= counts[SETTINGS] <= EVENTS
    assert result.counts == counts
    assert result.events_per_second > 0
    assert set(result.peak_rss_mib) == {"process-worker", "trigger-worker"}
    assert result.commands_per_event > 0
    assert "lpush" in result.redis_commands
    assert result.cpu_ms_per_event > 0


def test_floor_pipeline_makes_the_same_calls(bench: Bench) -> None:
    workload = Workload.create(1, 2).load_into(bench.simulator)
    result = bench.run_floor("test-floor", workload, EVENTS, process_concurrency=2, trigger_concurrency=4)
    counts = bench.simulator.counts()
    assert addon_calls(counts) == EVENTS * ADDONS_PER_EVENT
    assert counts[ASSET_DATA] == EVENTS
    assert counts[SETTINGS] == 1  # cached in the hop-1 process
    assert set(result.peak_rss_mib) == {"floor-hop1", "floor-hop2"}


def test_paced_run_measures_each_addon_call(bench: Bench) -> None:
    result = bench.run_paced("test-paced", EVENTS, rate=20.0)
    assert len(result.latencies) == EVENTS * ADDONS_PER_EVENT
    assert all(latency > 0 for latency in result.latencies)


def _run(name: str, events: int, seconds: float, **fields: Any) -> RunResult:
    return RunResult(name, events, seconds, **fields)


def test_rows_hold_every_measurement_and_ratio() -> None:
    counts_one = {SETTINGS: 1, ASSET_DATA: 1000, "addon:face_recognition": 1000}
    counts_hundred = {SETTINGS: 100, ASSET_DATA: 1000}
    real = _run(
        "real", 1000, 10.0, redis_commands={"lpush": 50_000}, cpu_seconds={"process-worker": 4.0, "redis-server": 1.0}
    )
    results = Results(
        real=real,
        floor=_run("floor", 1000, 8.0, cpu_seconds={"floor-hop1": 3.0}),
        capped=_run("capped", 300, 12.0),
        slow=_run("slow", 1000, 10.5),
        two_workers=_run("two", 1000, 6.0, redis_commands={"lpush": 52_000}),
        one_user=_run("one", 1000, 10.0, counts=counts_one),
        hundred_users=_run("hundred", 1000, 10.0, counts=counts_hundred),
        latency=LatencyResult(50.0, 10, [0.01 * i for i in range(1, 31)]),
        memory=_run("memory", 10_000, 100.0, peak_rss_mib={"process-worker": 90.0, "trigger-worker": 110.0}),
        redis_ops={"SET": 100_000.0, "GET": 120_000.0},
        default_rate_limit=25.0,
        process_concurrency=8,
        trigger_concurrency=64,
        sizes=Sizes(),
    )
    rows = {row.measurement: row for row in rows_of(results)}
    assert {row.section for row in rows.values()} == {"1", "2", "3", "4", "5", "6"}
    assert rows["efficiency real / floor"].result == "0.80 (NOT met)"
    assert rows["latency hiding (slow / fast)"].result == "0.95 (met)"
    assert rows["settings / asset data calls per 1,000 events, 100 users"].result == "100.0 / 1000"
    assert rows["peak RSS (VmHWM) trigger-worker after 10,000 events"].result == "110 MiB"
    assert rows["Redis commands per event (1 / 2 workers per kind)"].result == "50.0 / 52.0"
    assert rows["one Redis stops near (ops/s / commands per event)"].result == "2,200 events/s"
    latency = next(row for key, row in rows.items() if key.startswith("enqueue -> addon call"))
    assert latency.result == "p50 150 ms, p95 290 ms, p99 300 ms"
    assert results.as_json()["latency"]["p95_ms"] == 290.0


def test_table_renders_text_and_markdown() -> None:
    rows = [Row("1", "efficiency a|b", "0.95 (met)", ">= 0.9"), Row("2", "x", "y")]
    text = render_text(rows).splitlines()
    assert text[0].split() == ["#", "measurement", "result", "target"]
    assert text[2].startswith("1  efficiency a|b")
    markdown = render_markdown(rows).splitlines()
    assert markdown[2] == "| 1 | efficiency a\\|b | 0.95 (met) | >= 0.9 |"
    assert ratio_verdict(0.91, 0.9) == "met"
    assert ratio_verdict(0.89, 0.9) == "NOT met"
