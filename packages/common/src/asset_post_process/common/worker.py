"""What every worker program does besides its task: JSON logs, a heartbeat and the delayed-retry pump."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import setup_logging, worker_ready, worker_shutdown

from asset_post_process.common.delayed import DelayedPump, DelayedQueue
from asset_post_process.common.heartbeat import install_heartbeat
from asset_post_process.common.keys import Keys
from asset_post_process.common.logs import configure_logging
from asset_post_process.common.redis_client import connect
from asset_post_process.common.settings import Settings


def setup_worker(app: Celery, kind: str, settings: Settings) -> None:
    """Wire ``app``'s workers of ``kind`` ("process" or "trigger"): logging, heartbeat, retry pump."""
    keys = Keys(settings.key_prefix)

    def _logging(**_: Any) -> None:
        configure_logging(settings.log_level)

    setup_logging.connect(_logging, weak=False)
    install_heartbeat(app, kind, lambda: connect(settings.effective_cache_url), keys, settings.heartbeat_ttl_seconds)
    pumps: list[DelayedPump] = []

    def _send(task: str, queue: str, message: Any, retries: int) -> None:
        app.send_task(task, args=[message], queue=queue, retries=retries)

    def _start_pump(sender: Any = None, **_: Any) -> None:
        if sender is None or getattr(sender, "app", None) is not app:
            return
        pump = DelayedPump(DelayedQueue(connect(settings.effective_cache_url), keys), _send)
        pumps.append(pump)
        pump.start()

    def _stop_pump(**_: Any) -> None:
        while pumps:
            pumps.pop().stop()

    worker_ready.connect(_start_pump, weak=False)
    worker_shutdown.connect(_stop_pump, weak=False)
