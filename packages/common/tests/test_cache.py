from __future__ import annotations

import multiprocessing
import threading
import time

import pytest
import redis

from asset_post_process.common.cache import SingleFlightCache
from asset_post_process.common.keys import Keys


def test_miss_loads_and_keeps_with_ttl(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    cache = SingleFlightCache(redis_client, keys)
    key = keys.settings_cache("fp1")
    calls = []
    assert cache.get_or_load(key, 60, lambda: calls.append(1) or {"a": 1}) == {"a": 1}
    assert cache.get_or_load(key, 60, lambda: calls.append(1) or {"a": 2}) == {"a": 1}
    assert calls == [1]
    assert 0 < redis_client.ttl(key) <= 60


def test_loader_errors_are_not_cached(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    cache = SingleFlightCache(redis_client, keys)
    key = keys.settings_cache("fp2")

    def failing() -> dict[str, int]:
        raise RuntimeError("backend down")

    with pytest.raises(RuntimeError):
        cache.get_or_load(key, 60, failing)
    assert redis_client.exists(key) == 0
    assert redis_client.exists(keys.lock(key)) == 0
    assert cache.get_or_load(key, 60, lambda: {"ok": True}) == {"ok": True}


def test_concurrent_misses_in_threads_load_once(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    cache = SingleFlightCache(redis_client, keys)
    key = keys.settings_cache("fp3")
    calls: list[int] = []
    start = threading.Barrier(16)
    results: list[object] = []

    def slow_loader() -> dict[str, int]:
        calls.append(1)
        time.sleep(0.3)
        return {"v": 7}

    def worker() -> None:
        start.wait()
        results.append(cache.get_or_load(key, 60, slow_loader))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert calls == [1]
    assert results == [{"v": 7}] * 16


def _process_load(url: str, prefix: str, counter_key: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    client = redis.Redis.from_url(url)
    keys = Keys(prefix)
    cache = SingleFlightCache(client, keys)

    def loader() -> dict[str, int]:
        client.incr(counter_key)
        time.sleep(0.3)
        return {"v": 1}

    barrier.wait()
    cache.get_or_load(keys.settings_cache("shared"), 60, loader)


def test_concurrent_misses_across_processes_load_once(
    redis_url: str, redis_client: redis.Redis[bytes], keys: Keys
) -> None:
    context = multiprocessing.get_context("fork")
    counter_key = f"{keys.prefix}:loads"
    barrier = context.Barrier(6)
    procs = [
        context.Process(target=_process_load, args=(redis_url, keys.prefix, counter_key, barrier)) for _ in range(6)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 6
    assert int(redis_client.get(counter_key) or 0) == 1


def test_a_stuck_loader_does_not_block_others_forever(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    cache = SingleFlightCache(redis_client, keys, wait_seconds=0.3)
    key = keys.settings_cache("fp4")
    redis_client.set(keys.lock(key), "someone-else", px=60_000)  # a loader that hangs on to the lock
    assert cache.get_or_load(key, 60, lambda: {"loaded": "anyway"}) == {"loaded": "anyway"}
