"""The clients one API process holds: asyncio Redis for the cheap reads, a sync store for dead letters."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aredis
from celery import Celery
from fastapi import Request
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from asset_post_process.common.celeryapp import make_producer
from asset_post_process.common.deadletters import DeadLetterStore
from asset_post_process.common.keys import Keys
from asset_post_process.common.redis_client import connect
from asset_post_process.health_api.settings import HealthSettings


def async_client(url: str, timeout: float) -> aredis.Redis[bytes]:
    """An asyncio Redis client that fails fast: ``timeout`` on connect and on every reply, no retries."""
    client: aredis.Redis[bytes] = aredis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=False,
    )
    return client


@dataclass
class Resources:
    """Built once per API process from settings; clients connect lazily on first use."""

    settings: HealthSettings
    keys: Keys
    store: aredis.Redis[bytes]
    broker: aredis.Redis[bytes]
    sync_store: redis.Redis[bytes]
    dead_letters: DeadLetterStore
    _producer: Celery | None = field(default=None, repr=False)
    _producer_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_settings(cls, settings: HealthSettings) -> Resources:
        """Clients for the cache Redis and the broker Redis (one client when they are the same URL)."""
        keys = Keys(settings.key_prefix)
        timeout = settings.health_redis_timeout
        store = async_client(settings.effective_cache_url, timeout)
        same = settings.effective_broker_url == settings.effective_cache_url
        broker = store if same else async_client(settings.effective_broker_url, timeout)
        sync_store = connect(settings.effective_cache_url, socket_timeout=max(timeout, 2.0))
        return cls(
            settings=settings,
            keys=keys,
            store=store,
            broker=broker,
            sync_store=sync_store,
            dead_letters=DeadLetterStore(sync_store, keys, settings.dead_letter_max),
        )

    @property
    def queues(self) -> list[str]:
        """The service's two queues."""
        return [self.settings.process_queue, self.settings.trigger_queue]

    def send(self, task: str, queue: str, message: Any) -> None:
        """Send ``message`` as ``task`` to ``queue`` (the dead-letter replay sender)."""
        with self._producer_lock:
            if self._producer is None:
                self._producer = make_producer(self.settings)
            producer = self._producer
        producer.send_task(task, args=[message], queue=queue)

    async def aclose(self) -> None:
        """Close every client."""
        await self.store.aclose()  # type: ignore[attr-defined]  # types-redis 4.6 predates aclose
        if self.broker is not self.store:
            await self.broker.aclose()  # type: ignore[attr-defined]
        self.sync_store.close()
        with self._producer_lock:
            if self._producer is not None:
                self._producer.close()
                self._producer = None


async def get_resources(request: Request) -> Resources:
    """A FastAPI dependency: this process's :class:`Resources` (built by the app's lifespan or factory)."""
    resources: Resources | None = getattr(request.app.state, "resources", None)
    if resources is None:
        raise RuntimeError("the health API's resources are not built: run it with its lifespan or create_app(settings)")
    return resources
