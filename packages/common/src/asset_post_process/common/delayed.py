"""Delayed retries kept in Redis instead of in a worker's memory.

Celery's own ``retry(countdown=...)`` parks the message, unacknowledged, inside one worker until it is due;
the broker can only hand it to another worker after the visibility timeout, which therefore has to be
longer than any backoff. Keeping due-later messages in a sorted set instead lets the visibility timeout
stay short (a SIGKILLed worker's task comes back in minutes, not hours), makes pending retries visible
to operators, and survives any worker dying.

Every worker runs a small pump that moves due entries back onto their queue. An entry is first leased
(its score pushed into the future), then sent, then removed, so a pump that dies mid-way loses nothing:
the lease expires and another pump sends it again (the receivers are idempotent).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from asset_post_process.common.keys import Keys

log = logging.getLogger(__name__)

Sender = Callable[[str, str, Any, int], None]
"""``send(task_name, queue, message, retries)``: puts a message back on its queue."""

_CLAIM = """
local due = redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('zadd', KEYS[1], ARGV[3], member)
end
return due
"""


class DelayedQueue:
    """Messages due at a later time, in one Redis sorted set scored by due time."""

    def __init__(self, client: redis.Redis[bytes], keys: Keys, *, lease_seconds: float = 60.0) -> None:
        self._redis = client
        self._key = keys.delayed
        self._lease = lease_seconds
        self._claim = client.register_script(_CLAIM)

    def schedule(self, task: str, queue: str, message: Any, retries: int, delay_seconds: float) -> None:
        """Send ``message`` to ``queue`` as ``task`` (with ``retries`` so far) in ``delay_seconds``."""
        entry = json.dumps(
            {"id": uuid.uuid4().hex, "task": task, "queue": queue, "message": message, "retries": retries},
            separators=(",", ":"),
        )
        self._redis.zadd(self._key, {entry: time.time() + max(0.0, delay_seconds)})

    def count(self) -> int:
        """How many messages wait for a retry."""
        return int(self._redis.zcard(self._key))

    def due_count(self, now: float | None = None) -> int:
        """How many are due now (a growing number means the pumps do not keep up)."""
        return int(self._redis.zcount(self._key, "-inf", now or time.time()))

    def pump(self, send: Sender, limit: int = 100) -> int:
        """Send up to ``limit`` due messages back to their queues; returns how many were sent."""
        now = time.time()
        members = self._claim(keys=[self._key], args=[now, limit, now + self._lease])
        sent = 0
        for member in members:
            try:
                entry = json.loads(member)
                send(entry["task"], entry["queue"], entry["message"], int(entry.get("retries", 0)))
            except redis.RedisError:
                raise
            except Exception:
                # A broker hiccup: the lease runs out and the entry is sent again later.
                log.exception("delayed retry not sent; it will be tried again after its lease")
                continue
            self._redis.zrem(self._key, member)
            sent += 1
        return sent


class DelayedPump:
    """A daemon thread that calls :meth:`DelayedQueue.pump` every ``interval`` seconds."""

    def __init__(self, queue: DelayedQueue, send: Sender, interval: float = 0.5) -> None:
        self._queue = queue
        self._send = send
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="postprocess-delayed-pump", daemon=True)

    def start(self) -> None:
        """Start pumping."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop pumping (waits for the current round)."""
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                while self._queue.pump(self._send) and not self._stop.is_set():
                    pass
            except redis.RedisError as exc:
                log.warning("delayed retries not pumped: %s", type(exc).__name__)
            self._stop.wait(self._interval)
