"""The shared rate limit against a real Redis: spacing, bounded waits, atomic reservations."""

from __future__ import annotations

import itertools
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


def test_concurrent_callers_get_distinct_slots(redis_url: str, keys: Keys) -> None:
    rate = 2.0
    waits: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(30)

    def take() -> None:
        client: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
        limiter = RateLimiter(client, keys, rate_per_second=rate, max_wait_seconds=60)
        start.wait()
        permit = limiter.acquire(ADDON)
        assert permit.granted
        with lock:
            waits.append(permit.wait_seconds)
        client.close()

    threads = [threading.Thread(target=take) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(waits) == 30
    ordered = sorted(waits)
    # Every caller got its own slot: consecutive reservations are one interval (0.5 s) apart, less the moment
    # between two script runs (far below the 0.25 s margin).
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    assert min(gaps) > 1 / rate - 0.25
    assert ordered[-1] == pytest.approx(29 / rate, abs=0.5)


def test_rejects_nonsense_settings(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    with pytest.raises(ValueError, match="rate_per_second"):
        RateLimiter(redis_client, keys, rate_per_second=0)
