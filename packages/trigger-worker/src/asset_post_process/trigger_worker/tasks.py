"""The ``trigger_addon`` Celery task: a thin shell over :func:`handler.handle_job`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery
from celery.exceptions import Reject

from asset_post_process.common.contract import TRIGGER_ADDON_TASK
from asset_post_process.trigger_worker.context import TriggerContext, get_context
from asset_post_process.trigger_worker.handler import handle_job

log = logging.getLogger("asset_post_process.trigger_worker")

#: Pause before handing a message back to the broker when Redis cannot be reached (no hot loop).
REDIS_DOWN_PAUSE_SECONDS = 2.0


def register_tasks(app: Celery, context: Callable[[], TriggerContext] = get_context) -> Any:
    """Register ``trigger_addon`` on ``app``; returns the task."""

    @app.task(name=TRIGGER_ADDON_TASK, bind=True, acks_late=True)  # type: ignore[untyped-decorator]
    def trigger_addon(self: Any, *args: Any, **kwargs: Any) -> None:
        # One positional argument by contract; anything else still reaches handle_job to be dead-lettered.
        message: Any = args[0] if len(args) == 1 and not kwargs else {"args": list(args), "kwargs": kwargs}
        try:
            handle_job(message, attempt=int(self.request.retries or 0), ctx=context())
        except redis.RedisError as exc:
            # Nothing can be recorded without Redis: do not ack; the broker hands the message out again.
            log.error("redis unavailable (%s); trigger job handed back to the broker", type(exc).__name__)
            time.sleep(REDIS_DOWN_PAUSE_SECONDS)
            raise Reject(reason="redis unavailable", requeue=True) from None

    return trigger_addon
