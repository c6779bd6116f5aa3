"""Worker heartbeats in Redis, so the health API can tell live workers without pinging them.

Each worker node adds itself to a per-kind sorted set (score: time of its last beat) from a small
thread started on ``worker_ready``; readers count the nodes whose beat is younger than the TTL.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from asset_post_process.common.keys import Keys

log = logging.getLogger(__name__)

WORKER_KINDS = ("process", "trigger")


class Heartbeat:
    """Beats for one worker node of one kind until stopped."""

    def __init__(self, client: redis.Redis[bytes], keys: Keys, kind: str, node: str, ttl_seconds: int) -> None:
        self._redis = client
        self._key = keys.heartbeats(kind)
        self._node = node
        self._ttl = ttl_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """Record that this node is alive now, and drop nodes that stopped beating long ago."""
        now = time.time()
        pipe = self._redis.pipeline()
        pipe.zadd(self._key, {self._node: now})
        pipe.zremrangebyscore(self._key, "-inf", now - 10 * self._ttl)
        pipe.expire(self._key, 10 * self._ttl)
        pipe.execute()

    def start(self) -> None:
        """Beat now and then every third of the TTL, from a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="postprocess-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and remove this node, so it reads as gone at once."""
        self._stop.set()
        try:
            self._redis.zrem(self._key, self._node)
        except redis.RedisError:
            log.warning("could not remove the heartbeat of %s", self._node)

    def _run(self) -> None:
        interval = max(self._ttl / 3, 0.5)
        while not self._stop.is_set():
            try:
                self.beat()
            except redis.RedisError as exc:
                log.warning("heartbeat not written: %s", type(exc).__name__)
            self._stop.wait(interval)


def live_nodes(client: redis.Redis[bytes], keys: Keys, kind: str, ttl_seconds: int) -> list[str]:
    """Nodes of ``kind`` whose last beat is younger than ``ttl_seconds``."""
    since = time.time() - ttl_seconds
    return [n.decode() for n in client.zrangebyscore(keys.heartbeats(kind), since, "+inf")]


def install_heartbeat(app: Celery, kind: str, client_factory: Any, keys: Keys, ttl_seconds: int) -> None:
    """Make workers of ``app`` beat as ``kind`` while they run (``client_factory()`` gives a Redis client)."""
    state: dict[str, Heartbeat] = {}

    def _start(sender: Any = None, **_: Any) -> None:
        if sender is None or getattr(sender, "app", None) is not app:
            return
        node = getattr(sender, "hostname", None) or f"{kind}@{socket.gethostname()}"
        heartbeat = Heartbeat(client_factory(), keys, kind, node, ttl_seconds)
        state["heartbeat"] = heartbeat
        heartbeat.start()

    def _stop(**_: Any) -> None:
        heartbeat = state.pop("heartbeat", None)
        if heartbeat is not None:
            heartbeat.stop()

    worker_ready.connect(_start, weak=False)
    worker_shutdown.connect(_stop, weak=False)
