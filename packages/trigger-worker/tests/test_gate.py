"""The job gate against a real Redis: done mark, breaker peek, rate-limit slot and breaker acquire in one script."""

from __future__ import annotations

import redis

from asset_post_process.common.keys import Keys
from asset_post_process.devkit.ports import wait_for
from asset_post_process.trigger_worker.breaker import CircuitBreaker, Gate
from asset_post_process.trigger_worker.gate import JobGate, Step
from asset_post_process.trigger_worker.ratelimit import RateLimiter

ADDON = "SCENE_CLASSIFICATION"
JOB = "ev-1:SCENE_CLASSIFICATION"


def parts(
    client: redis.Redis[bytes], keys: Keys, *, rate: float = 1000.0, max_wait: float = 1.0, open_seconds: float = 60
) -> tuple[JobGate, CircuitBreaker, RateLimiter]:
    breaker = CircuitBreaker(client, keys, threshold=2, open_seconds=open_seconds, probe_lease_seconds=30)
    limiter = RateLimiter(client, keys, rate_per_second=rate, max_wait_seconds=max_wait)
    return JobGate(client, keys, breaker, limiter), breaker, limiter


def trip(breaker: CircuitBreaker) -> None:
    breaker.record_failure(ADDON)
    breaker.record_failure(ADDON)


def test_closed_breaker_and_a_free_slot_admit(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    gate, breaker, _ = parts(redis_client, keys)
    passage = gate.admit(JOB, ADDON)
    assert passage.step is Step.ADMITTED
    assert passage.admission is not None
    assert passage.admission.gate is Gate.ALLOW
    assert redis_client.exists(keys.rate_limit(ADDON))  # the slot was taken
    assert breaker.state(ADDON) == "closed"


def test_a_done_job_touches_nothing(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    gate, breaker, _ = parts(redis_client, keys)
    trip(breaker)
    redis_client.set(keys.job_done(JOB), b"1")
    assert gate.admit(JOB, ADDON).step is Step.DUPLICATE
    assert not redis_client.exists(keys.rate_limit(ADDON))
    assert gate.admit("ev-2:SCENE_CLASSIFICATION", ADDON).step is Step.HELD  # another job of the addon


def test_an_open_breaker_holds_the_job_without_taking_a_slot(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    gate, breaker, _ = parts(redis_client, keys)
    trip(breaker)
    passage = gate.admit(JOB, ADDON)
    assert passage.step is Step.HELD
    assert passage.admission is not None
    assert passage.admission.gate is Gate.OPEN
    assert 0 < passage.admission.wait_seconds <= 60
    assert not redis_client.exists(keys.rate_limit(ADDON))


def test_a_half_open_breaker_gives_one_probe(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    gate, breaker, _ = parts(redis_client, keys, open_seconds=0.2)
    trip(breaker)
    assert wait_for(lambda: breaker.peek(ADDON).allowed, timeout=5)
    first = gate.admit(JOB, ADDON)
    assert first.step is Step.ADMITTED
    assert first.admission is not None
    assert first.admission.gate is Gate.PROBE
    second = gate.admit("ev-2:SCENE_CLASSIFICATION", ADDON)
    assert second.step is Step.HELD
    assert second.admission is not None
    assert second.admission.gate is Gate.HALF_OPEN


def test_a_far_slot_is_not_reserved_and_the_probe_not_taken(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    gate, breaker, limiter = parts(redis_client, keys, rate=1, max_wait=0, open_seconds=0.2)
    assert limiter.acquire(ADDON).granted
    trip(breaker)
    assert wait_for(lambda: breaker.peek(ADDON).allowed, timeout=5)
    schedule = redis_client.get(keys.rate_limit(ADDON))
    passage = gate.admit(JOB, ADDON)
    assert passage.step is Step.LIMITED
    assert passage.permit is not None
    assert not passage.permit.granted
    assert 0 < passage.permit.wait_seconds <= 1.0
    assert redis_client.get(keys.rate_limit(ADDON)) == schedule
    assert breaker.state(ADDON) == "open"  # still free for a job that can call now


def test_a_near_slot_is_reserved_and_the_breaker_left_for_after_the_wait(
    redis_client: redis.Redis[bytes], keys: Keys
) -> None:
    gate, breaker, limiter = parts(redis_client, keys, rate=1, max_wait=1.5, open_seconds=0.2)
    assert limiter.acquire(ADDON).granted
    trip(breaker)
    assert wait_for(lambda: breaker.peek(ADDON).allowed, timeout=5)
    passage = gate.admit(JOB, ADDON)
    assert passage.step is Step.WAIT
    assert passage.permit is not None
    assert passage.permit.granted
    assert 0 < passage.permit.wait_seconds <= 1.0
    assert breaker.state(ADDON) == "open"  # the probe is acquired by the caller after its wait
    assert breaker.acquire(ADDON).gate is Gate.PROBE
