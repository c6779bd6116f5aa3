"""A Redis cache with TTLs and single-flight loading across processes.

When N workers miss the same key at once, one of them takes a short lock and loads the value; the
others wait for it to appear instead of calling the backend too. A loader error is never cached.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from asset_post_process.common.keys import Keys

_RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class SingleFlightCache:
    """JSON values in Redis, loaded at most once at a time per key across every process."""

    def __init__(
        self,
        client: redis.Redis[bytes],
        keys: Keys,
        *,
        lock_ttl_seconds: float = 30.0,
        wait_seconds: float = 30.0,
        poll_seconds: float = 0.02,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._lock_ttl_ms = int(lock_ttl_seconds * 1000)
        self._wait_seconds = wait_seconds
        self._poll_seconds = poll_seconds
        self._release = client.register_script(_RELEASE_LOCK)

    def get(self, key: str) -> Any | None:
        """The cached value of ``key``, or ``None``."""
        raw = self._redis.get(key)
        return None if raw is None else json.loads(raw)

    def delete(self, key: str) -> None:
        """Forget ``key``."""
        self._redis.delete(key)

    def get_or_load(self, key: str, ttl_seconds: int, loader: Callable[[], Any]) -> Any:
        """The cached value of ``key``; on a miss, load it once (cluster-wide) and keep it ``ttl_seconds``."""
        cached = self.get(key)
        if cached is not None:
            return cached
        lock_key = self._keys.lock(key)
        token = uuid.uuid4().hex
        deadline = time.monotonic() + self._wait_seconds
        while True:
            if self._redis.set(lock_key, token, nx=True, px=self._lock_ttl_ms):
                try:
                    cached = self.get(key)  # filled while we were taking the lock
                    if cached is not None:
                        return cached
                    value = loader()
                    self._redis.set(key, json.dumps(value, separators=(",", ":")), ex=ttl_seconds)
                    return value
                finally:
                    self._release(keys=[lock_key], args=[token])
            time.sleep(self._poll_seconds)
            cached = self.get(key)
            if cached is not None:
                return cached
            if time.monotonic() >= deadline:
                # The loader holding the lock is stuck or failing: load ourselves rather than fail.
                return loader()
