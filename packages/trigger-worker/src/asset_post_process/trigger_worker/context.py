"""Everything a trigger job needs, built once per worker process from settings."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from asset_post_process.common.crypto import ApiKeyCipher
from asset_post_process.common.deadletters import DeadLetterStore
from asset_post_process.common.delayed import DelayedQueue
from asset_post_process.common.filespin import FileSpinClient
from asset_post_process.common.keys import Keys
from asset_post_process.common.metrics import Metrics
from asset_post_process.common.registry import AddonRegistry
from asset_post_process.common.services import Services, get_services
from asset_post_process.common.settings import Settings
from asset_post_process.trigger_worker.breaker import CircuitBreaker
from asset_post_process.trigger_worker.gate import JobGate
from asset_post_process.trigger_worker.outcomes import RetryPolicy
from asset_post_process.trigger_worker.ratelimit import RateLimiter

#: Longest a job sleeps in its worker thread for a rate-limit slot; further out, it is rescheduled.
RATE_LIMIT_MAX_WAIT_SECONDS = 1.0
#: Shortest wait before a job asks again while another worker holds the half-open probe (a quarter of the
#: breaker's open period when that is longer).
HALF_OPEN_POLL_SECONDS = 1.0


@dataclass
class TriggerContext:
    """The collaborators of :func:`~asset_post_process.trigger_worker.handler.handle_job`."""

    settings: Settings
    keys: Keys
    redis: redis.Redis[bytes]
    cipher: ApiKeyCipher
    registry: AddonRegistry
    filespin: FileSpinClient
    dead_letters: DeadLetterStore
    metrics: Metrics
    delayed: DelayedQueue
    breaker: CircuitBreaker
    limiter: RateLimiter
    policy: RetryPolicy
    gate: JobGate
    sleep: Callable[[float], None] = field(default=time.sleep)

    @classmethod
    def from_services(cls, services: Services) -> TriggerContext:
        """The context over a process's shared :class:`Services`."""
        settings = services.settings
        breaker = CircuitBreaker(
            services.redis,
            services.keys,
            threshold=settings.breaker_failure_threshold,
            open_seconds=settings.breaker_open_seconds,
            # A probe holds its lease for as long as its call may take, so no second probe overlaps it.
            probe_lease_seconds=settings.http_connect_timeout + settings.http_read_timeout + 5.0,
        )
        limiter = RateLimiter(
            services.redis,
            services.keys,
            rate_per_second=settings.addon_rate_limit_per_second,
            max_wait_seconds=RATE_LIMIT_MAX_WAIT_SECONDS,
        )
        return cls(
            settings=settings,
            keys=services.keys,
            redis=services.redis,
            cipher=services.cipher,
            registry=services.registry,
            filespin=services.filespin,
            dead_letters=services.dead_letters,
            metrics=services.metrics,
            delayed=DelayedQueue(services.redis, services.keys),
            breaker=breaker,
            limiter=limiter,
            policy=RetryPolicy(
                max_retries=settings.trigger_max_retries,
                base_seconds=settings.retry_backoff_base_seconds,
                cap_seconds=settings.retry_backoff_max_seconds,
            ),
            gate=JobGate(services.redis, services.keys, breaker, limiter),
        )


@functools.cache
def get_context() -> TriggerContext:
    """This process's context, built on first use (after a prefork fork, so no socket is shared)."""
    return TriggerContext.from_services(get_services())
