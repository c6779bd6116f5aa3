"""Delayed retries, decision log, metrics and heartbeats against a real Redis."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis

from asset_post_process.common.decisions import DecisionLog
from asset_post_process.common.delayed import DelayedPump, DelayedQueue
from asset_post_process.common.heartbeat import Heartbeat, live_nodes
from asset_post_process.common.keys import Keys
from asset_post_process.common.metrics import LATENCY_BUCKETS, Metrics


def test_delayed_entries_wait_until_due(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    queue = DelayedQueue(redis_client, keys)
    queue.schedule("trigger_addon", "q", {"n": 1}, retries=1, delay_seconds=0)
    queue.schedule("trigger_addon", "q", {"n": 2}, retries=3, delay_seconds=3600)
    sent: list[tuple[str, str, Any, int]] = []
    assert queue.pump(lambda *a: sent.append(a)) == 1
    assert sent == [("trigger_addon", "q", {"n": 1}, 1)]
    assert queue.count() == 1
    assert queue.due_count() == 0


def test_a_failed_send_is_retried_after_its_lease(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    queue = DelayedQueue(redis_client, keys, lease_seconds=0.2)
    queue.schedule("process_asset", "q", {"n": 1}, retries=1, delay_seconds=0)

    def broken(*_: Any) -> None:
        raise ConnectionError("broker hiccup")

    assert queue.pump(broken) == 0
    assert queue.count() == 1
    sent: list[Any] = []
    assert queue.pump(lambda *a: sent.append(a)) == 0  # leased: not due yet
    time.sleep(0.3)
    assert queue.pump(lambda *a: sent.append(a)) == 1
    assert queue.count() == 0


def test_two_pumps_never_send_the_same_entry(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    queue = DelayedQueue(redis_client, keys)
    for n in range(50):
        queue.schedule("t", "q", {"n": n}, retries=1, delay_seconds=0)
    sent: list[int] = []
    pumps = [DelayedPump(queue, lambda _t, _q, m, _r: sent.append(m["n"]), interval=0.01) for _ in range(3)]
    for pump in pumps:
        pump.start()
    deadline = time.monotonic() + 10
    while queue.count() and time.monotonic() < deadline:
        time.sleep(0.02)
    for pump in pumps:
        pump.stop()
    assert sorted(sent) == list(range(50))


def test_decision_log_keeps_the_latest_with_ttl(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    log = DecisionLog(redis_client, keys, per_asset=3, ttl_seconds=120)
    for n in range(5):
        log.record("a" * 32, {"event_id": f"e{n}", "decisions": []})
    assert [e["event_id"] for e in log.latest("a" * 32)] == ["e4", "e3", "e2"]
    assert 0 < redis_client.ttl(keys.decisions("a" * 32)) <= 120
    assert log.latest("b" * 32) == []


def test_metrics_count_and_histogram(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    metrics = Metrics(redis_client, keys)
    metrics.count_outcome("FACE_RECOGNITION", "done")
    metrics.count_outcome("FACE_RECOGNITION", "done")
    metrics.count_outcome("SCENE_CLASSIFICATION", "dead_lettered")
    assert metrics.outcomes() == {("FACE_RECOGNITION", "done"): 2, ("SCENE_CLASSIFICATION", "dead_lettered"): 1}
    for seconds in (0.005, 0.2, 0.2, 99.0):
        metrics.observe_latency("FACE_RECOGNITION", seconds)
    histogram = metrics.latency("FACE_RECOGNITION")
    assert histogram.count == 4
    assert histogram.total_seconds == pytest.approx(99.405)
    assert histogram.buckets[0.01] == 1
    assert histogram.buckets[0.25] == 3
    assert histogram.buckets[LATENCY_BUCKETS[-1]] == 3  # the 99 s call is only in +Inf


def test_heartbeats_expire_and_stop_removes(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    beat = Heartbeat(redis_client, keys, "trigger", "trigger@node1", ttl_seconds=2)
    beat.beat()
    assert live_nodes(redis_client, keys, "trigger", 2) == ["trigger@node1"]
    assert live_nodes(redis_client, keys, "process", 2) == []
    redis_client.zadd(keys.heartbeats("trigger"), {"trigger@old": time.time() - 5})
    assert live_nodes(redis_client, keys, "trigger", 2) == ["trigger@node1"]
    beat.stop()
    assert live_nodes(redis_client, keys, "trigger", 2) == []


def test_heartbeat_thread_beats(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    beat = Heartbeat(redis_client, keys, "process", "process@n", ttl_seconds=2)
    beat.start()
    try:
        deadline = time.monotonic() + 5
        while not live_nodes(redis_client, keys, "process", 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert live_nodes(redis_client, keys, "process", 2) == ["process@n"]
    finally:
        beat.stop()


def test_no_key_is_written_without_the_prefix(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    DecisionLog(redis_client, keys).record("c" * 32, {"x": json.dumps({})})
    Metrics(redis_client, keys).count_outcome("A", "done")
    DelayedQueue(redis_client, keys).schedule("t", "q", {}, 1, 60)
    written = [k.decode() for k in redis_client.scan_iter(match=f"{keys.prefix}*")]
    assert len(written) == 3
    assert all(k.startswith(keys.prefix + ":") for k in written)
