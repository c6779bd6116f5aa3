"""The shared rate limit against a real Redis: spacing, bounded waits, atomic reservations."""

from __future__ import annotations

import threading

import pytest
import redis

from asset_post_process.common.keys import Keys
from asset_post_process.trigger_worker.ratelimit import RateLimiter

ADDON = "FACE_RECOGNITION"


def test_calls_are_spaced_by_the_rate(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    limiter = RateLimiter(redis_client, keys, rate_per_second=1, max_wait_seconds=1.5)
    permits = [limiter.acquire(ADDON) for _ in range(3)]
    assert [p.granted for p in permits] == [True, True, False]
    assert permits[0].wait_seconds == 0
    # The second slot is reserved one second after the first (less the moment spent between the calls).
    assert 0.5 < permits[1].wait_seconds <= 1.0
    # The third is too far out: not reserved, told how long to stay away.
    assert 1.5 < permits[2].wait_seconds <= 2.0


def test_a_refused_caller_reserves_nothing(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    limiter = RateLimiter(redis_client, keys, rate_per_second=1, max_wait_seconds=0)
    assert limiter.acquire(ADDON).granted
    refused = [limiter.acquire(ADDON) for _ in range(5)]
    assert not any(p.granted for p in refused)
    # Had they reserved, each would be told to wait a second longer than the one before.
    assert max(p.wait_seconds for p in refused) <= 1.0


def test_burst_lets_several_through_at_once(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    limiter = RateLimiter(redis_client, keys, rate_per_second=5, burst=3, max_wait_seconds=0)
    assert [limiter.acquire(ADDON).granted for _ in range(4)] == [True, True, True, False]


def test_limits_are_per_addon(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    limiter = RateLimiter(redis_client, keys, rate_per_second=1, max_wait_seconds=0)
    assert limiter.acquire(ADDON).granted
    assert limiter.acquire("SCENE_CLASSIFICATION").granted
    assert not limiter.acquire(ADDON).granted


def test_concurrent_callers_get_distinct_slots(redis_url: str, redis_client: redis.Redis[bytes], keys: Keys) -> None:
    rate, callers = 2.0, 30
    granted: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(callers)

    def server_now() -> float:
        seconds, micros = redis_client.time()
        return float(seconds) + float(micros) / 1e6

    def take() -> None:
        client: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
        limiter = RateLimiter(client, keys, rate_per_second=rate, max_wait_seconds=60)
        start.wait()
        permit = limiter.acquire(ADDON)
        with lock:
            granted.append(permit.granted)
        client.close()

    before = server_now()
    threads = [threading.Thread(target=take) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    after = server_now()
    assert granted == [True] * callers
    # Every grant moved the schedule one interval further: no two callers shared a slot (a lost update would
    # leave the schedule short), whatever the threads' timing.
    schedule_end = float(redis_client.get(keys.rate_limit(ADDON)) or 0)
    assert before + callers / rate <= schedule_end <= after + callers / rate


def test_rejects_nonsense_settings(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    with pytest.raises(ValueError, match="rate_per_second"):
        RateLimiter(redis_client, keys, rate_per_second=0)
