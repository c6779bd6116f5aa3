"""The circuit breaker against a real Redis: thresholds, the open period and the single half-open probe."""

from __future__ import annotations

import threading

import pytest
import redis

from asset_post_process.common.keys import Keys
from asset_post_process.devkit.ports import wait_for
from asset_post_process.trigger_worker.breaker import CircuitBreaker, Gate

ADDON = "SCENE_CLASSIFICATION"


def breaker(client: redis.Redis[bytes], keys: Keys, open_seconds: float = 0.3, lease: float = 30.0) -> CircuitBreaker:
    return CircuitBreaker(client, keys, threshold=3, open_seconds=open_seconds, probe_lease_seconds=lease)


def trip(b: CircuitBreaker) -> None:
    for _ in range(3):
        b.record_failure(ADDON)


def test_closed_lets_calls_through(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    b = breaker(redis_client, keys)
    assert b.acquire(ADDON).gate is Gate.ALLOW
    assert b.state(ADDON) == "closed"


def test_opens_after_threshold_consecutive_failures(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    b = breaker(redis_client, keys, open_seconds=60)
    assert not b.record_failure(ADDON)
    assert not b.record_failure(ADDON)
    assert b.acquire(ADDON).allowed
    assert b.record_failure(ADDON)
    admission = b.acquire(ADDON)
    assert admission.gate is Gate.OPEN
    assert not admission.allowed
    assert 0 < admission.wait_seconds <= 60


def test_an_answer_resets_the_consecutive_count(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    b = breaker(redis_client, keys, open_seconds=60)
    b.record_failure(ADDON)
    b.record_failure(ADDON)
    b.record_success(ADDON)
    b.record_failure(ADDON)
    b.record_failure(ADDON)
    assert b.acquire(ADDON).gate is Gate.ALLOW


def test_breakers_are_per_addon(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    b = breaker(redis_client, keys, open_seconds=60)
    trip(b)
    assert b.acquire(ADDON).gate is Gate.OPEN
    assert b.acquire("EMOTION_RECOGNITION").gate is Gate.ALLOW


def test_state_is_shared_between_breaker_instances(redis_url: str, keys: Keys) -> None:
    first: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    second: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    trip(breaker(first, keys, open_seconds=60))
    assert breaker(second, keys, open_seconds=60).acquire(ADDON).gate is Gate.OPEN
    first.close()
    second.close()


def test_half_open_lets_exactly_one_probe_through(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    b = breaker(redis_client, keys, open_seconds=0.3)
    trip(b)
    # Wait (bounded) until the open period is over without taking the probe: compare with the stored deadline.
    deadline = float(redis_client.hget(keys.breaker(ADDON), "open_until") or 0)

    def server_now() -> float:
        seconds, micros = redis_client.time()
        return float(seconds) + float(micros) / 1e6

    assert wait_for(lambda: server_now() >= deadline, timeout=5)
    gates: list[Gate] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def contend() -> None:
        start.wait()
        gate = b.acquire(ADDON).gate
        with lock:
            gates.append(gate)

    threads = [threading.Thread(target=contend) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert gates.count(Gate.PROBE) == 1
    assert gates.count(Gate.HALF_OPEN) == 15


def test_probe_success_closes(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    b = breaker(redis_client, keys, open_seconds=0.2)
    trip(b)
    assert wait_for(lambda: b.acquire(ADDON).gate is Gate.PROBE, timeout=5)
    b.record_success(ADDON)
    assert b.acquire(ADDON).gate is Gate.ALLOW
    assert b.state(ADDON) == "closed"


def test_probe_failure_reopens_for_a_full_period(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    b = breaker(redis_client, keys, open_seconds=0.2)
    trip(b)
    assert wait_for(lambda: b.acquire(ADDON).gate is Gate.PROBE, timeout=5)
    assert b.record_failure(ADDON)
    assert b.acquire(ADDON).gate is Gate.OPEN
    # And a single failure is enough to reopen from half-open (not the threshold again).
    assert wait_for(lambda: b.acquire(ADDON).gate is Gate.PROBE, timeout=5)
    b.record_failure(ADDON)
    assert b.state(ADDON) == "open"


def test_a_lost_probe_is_replaced_after_its_lease(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    b = breaker(redis_client, keys, open_seconds=0.1, lease=0.3)
    trip(b)
    assert wait_for(lambda: b.acquire(ADDON).gate is Gate.PROBE, timeout=5)
    # The probe's worker died: nobody records anything. Others wait, then one of them probes.
    assert b.acquire(ADDON).gate is Gate.HALF_OPEN
    assert wait_for(lambda: b.acquire(ADDON).gate is Gate.PROBE, timeout=5)


def test_rejects_nonsense_settings(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    with pytest.raises(ValueError, match="threshold"):
        CircuitBreaker(redis_client, keys, threshold=0, open_seconds=1, probe_lease_seconds=1)


def test_peek_tells_without_taking_the_probe(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    b = breaker(redis_client, keys, open_seconds=0.2)
    assert b.peek(ADDON).gate is Gate.ALLOW
    trip(b)
    assert b.peek(ADDON).gate is Gate.OPEN
    assert wait_for(lambda: b.peek(ADDON).allowed, timeout=5)
    assert b.state(ADDON) == "open"  # peeking moved nothing
    assert b.acquire(ADDON).gate is Gate.PROBE
    assert b.peek(ADDON).gate is Gate.HALF_OPEN
