"""The ``process_asset`` Celery task: a thin shell over :func:`~.handler.handle_task_call`.

Retries do not use Celery's ``self.retry``: the handler schedules them in the delayed queue
(``common.delayed``) and the pump sends them back with ``retries=n``, which arrives here as
``self.request.retries``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from celery import Celery
from celery.exceptions import Reject

from asset_post_process.common.contract import PROCESS_ASSET_TASK
from asset_post_process.common.services import get_services
from asset_post_process.process_worker.dispatch import celery_sender
from asset_post_process.process_worker.handler import Context, handle_task_call

log = logging.getLogger("asset_post_process.process_worker")

#: Pause before requeueing a message when Redis is down, so a worker does not spin on it.
REQUEUE_PAUSE_SECONDS = 1.0

_lock = threading.Lock()
_contexts: dict[int, Context] = {}


def context_for(app: Celery) -> Context:
    """This process's handler context for ``app`` (built once, under a lock: the pool may be threads)."""
    with _lock:
        ctx = _contexts.get(id(app))
        if ctx is None:
            services = get_services()
            ctx = Context.from_services(services, celery_sender(app, services.settings.trigger_queue))
            _contexts[id(app)] = ctx
        return ctx


def register_tasks(app: Celery) -> Any:
    """Register ``process_asset`` on ``app``; returns the task."""

    @app.task(name=PROCESS_ASSET_TASK, bind=True, acks_late=True)  # type: ignore[untyped-decorator]
    def process_asset(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Handle one asset event (the contract: one positional argument, the message)."""
        attempt = int(self.request.retries or 0)
        try:
            return handle_task_call(args, kwargs, attempt, context_for(app)).summary()
        except redis.RedisError as exc:
            log.warning("Redis unavailable, message requeued (%s)", type(exc).__name__)
            time.sleep(REQUEUE_PAUSE_SECONDS)
            raise Reject(f"Redis unavailable ({type(exc).__name__})", requeue=True) from None

    return process_asset
