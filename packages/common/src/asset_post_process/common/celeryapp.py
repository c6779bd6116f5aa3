"""The one place a Celery app is built, so every program speaks the same protocol.

JSON only (a pickle from the broker is remote code execution), both queues routed by task name, late
acks with redelivery of tasks whose worker died, prefetch of one, no result backend.
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from asset_post_process.common.broker import TRANSPORT as BROKER_TRANSPORT
from asset_post_process.common.contract import PROCESS_ASSET_TASK, TRIGGER_ADDON_TASK
from asset_post_process.common.settings import Settings

#: How often each worker looks for unacknowledged messages older than the visibility timeout to requeue.
RESTORE_SWEEP_SECONDS = 5


def _queue(name: str) -> Queue:
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def make_celery(main: str, settings: Settings) -> Celery:
    """A Celery app named ``main`` configured from ``settings``."""
    app = Celery(main, broker=settings.effective_broker_url, set_as_current=False)
    app.conf.update(
        # kombu's Redis transport, but an item in a queue that is no kombu message is dropped, not fatal.
        broker_transport=BROKER_TRANSPORT,
        # Serialization: JSON in and out; anything else is refused before it reaches a task.
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_accept_content=["json"],
        # At-least-once: ack after the task ran, redeliver when the worker process is lost.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={
            # After this, an unacknowledged message (its worker died) goes back to the queue. Longer than
            # any task run; retries do not use countdowns (see delayed.py), so it can stay short.
            "visibility_timeout": settings.visibility_timeout_seconds,
            # kombu (5.7) looks for such messages only on every 10th tick of 10 s by default, so they came back
            # up to 100 s after the visibility timeout; sweep on every tick instead (one ZRANGE under a mutex).
            "unacked_restore_interval": RESTORE_SWEEP_SECONDS,
            "unacked_restore_throttle": 1,
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
            "retry_on_timeout": True,
            "health_check_interval": 25,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        broker_heartbeat=0,
        # Queues and routes.
        task_default_queue=settings.process_queue,
        task_default_exchange=settings.process_queue,
        task_default_routing_key=settings.process_queue,
        # One direct exchange per queue: with Celery's default the two queues would share an exchange
        # and routing key, and a message for one would be copied into both.
        task_queues=(_queue(settings.process_queue), _queue(settings.trigger_queue)),
        task_routes={
            PROCESS_ASSET_TASK: {"queue": settings.process_queue},
            TRIGGER_ADDON_TASK: {"queue": settings.trigger_queue},
        },
        task_create_missing_queues=False,
        # No results: outcomes live in logs, decisions, metrics and dead letters.
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        # Quiet, cheap workers.
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_enable_remote_control=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_lost_wait=20,
        enable_utc=True,
    )
    return app


def make_producer(settings: Settings) -> Celery:
    """A Celery app that only sends tasks (what the backend and the CLI use)."""
    return make_celery("asset-post-process-producer", settings)
