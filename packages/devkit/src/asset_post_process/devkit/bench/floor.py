"""The floor: a bare Celery two-hop pipeline making the same HTTP calls as the service, for comparison.

    celery -A asset_post_process.devkit.bench.floor worker -Q <hop 1 queue> -P threads -c 8

Hop 1 (``bench_floor.hop1``, message ``{"apikey", "asset_id"}``) reads the user's settings (cached in this
process's memory, loaded once per key), GETs the asset's data and sends one hop-2 task per enabled addon; hop 2
(``bench_floor.hop2``) POSTs the addon call. JSON, late acks and a prefetch of one, as the service (that is the
reliability contract, not overhead); nothing else: no encryption, no dedup marks, no rate limit, no breaker, no
decision log, no metrics, no log line of its own; Celery's per-task "received"/"succeeded" lines and httpx's
request lines are quiet, as in the service's workers (``common.logs.configure_logging``). Configured by
``BENCH_FLOOR_*`` environment variables (defaults for importing only).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import httpx
from celery import Celery
from kombu import Exchange, Queue

from asset_post_process.common.logs import CELERY_TASK_LOGGERS

HOP1_TASK = "bench_floor.hop1"
HOP2_TASK = "bench_floor.hop2"

BROKER_URL = os.environ.get("BENCH_FLOOR_BROKER_URL", "redis://127.0.0.1:6379/0")
API_URL = os.environ.get("BENCH_FLOOR_API_URL", "http://127.0.0.1:8900").rstrip("/")
HOP1_QUEUE = os.environ.get("BENCH_FLOOR_HOP1_QUEUE", "bench-floor.hop1")
HOP2_QUEUE = os.environ.get("BENCH_FLOOR_HOP2_QUEUE", "bench-floor.hop2")
API_KEY_HEADER = "X-FileSpin-Api-Key"


def _queue(name: str) -> Queue:
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def make_floor_app(broker_url: str = BROKER_URL, hop1_queue: str = HOP1_QUEUE, hop2_queue: str = HOP2_QUEUE) -> Celery:
    """The floor's Celery app (also what the bench sends hop-1 tasks with)."""
    floor = Celery("bench-floor", broker=broker_url, set_as_current=False)
    floor.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        worker_send_task_events=False,
        task_queues=(_queue(hop1_queue), _queue(hop2_queue)),
        task_routes={HOP1_TASK: {"queue": hop1_queue}, HOP2_TASK: {"queue": hop2_queue}},
        task_create_missing_queues=False,
        broker_connection_retry_on_startup=True,
    )
    return floor


app = make_floor_app()
for _name in (*CELERY_TASK_LOGGERS, "httpx", "httpcore"):  # as common.logs.configure_logging does
    logging.getLogger(_name).setLevel(logging.WARNING)
_http = httpx.Client(
    timeout=httpx.Timeout(30.0, connect=3.0), limits=httpx.Limits(max_connections=100, max_keepalive_connections=100)
)
_settings: dict[str, list[tuple[str, dict[str, Any]]]] = {}
_settings_lock = threading.Lock()


def enabled_addons(settings_answer: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(addon key, disposition)`` of each addon a settings answer enables (``added`` and ``enabled``)."""
    addons = (settings_answer.get("data") or {}).get("addons") or {}
    return [
        (key, dict((block.get("settings") or {}).get("disposition") or {}))
        for key, block in addons.items()
        if block.get("added", True) and block.get("enabled", True)
    ]


def _addons_of(apikey: str) -> list[tuple[str, dict[str, Any]]]:
    with _settings_lock:
        cached = _settings.get(apikey)
        if cached is None:
            answer = _http.get(f"{API_URL}/api/v1/user/settings", headers={API_KEY_HEADER: apikey})
            answer.raise_for_status()
            cached = _settings[apikey] = enabled_addons(answer.json())
        return cached


@app.task(name=HOP1_TASK)  # type: ignore[untyped-decorator]
def hop1(message: dict[str, Any]) -> None:
    """Settings (cached) + asset data, then one hop-2 task per addon."""
    apikey, asset_id = message["apikey"], message["asset_id"]
    addons = _addons_of(apikey)
    answer = _http.get(f"{API_URL}/api/v1/assets/{asset_id}/data", headers={API_KEY_HEADER: apikey})
    answer.raise_for_status()
    answer.json()
    for addon, disposition in addons:
        job = {"apikey": apikey, "asset_id": asset_id, "addon": addon, "disposition": disposition}
        app.send_task(HOP2_TASK, args=[job], queue=HOP2_QUEUE)


@app.task(name=HOP2_TASK)  # type: ignore[untyped-decorator]
def hop2(job: dict[str, Any]) -> None:
    """The addon call."""
    url = f"{API_URL}/api/v1/assets/{job['asset_id']}/addons/{job['addon'].lower()}"
    answer = _http.post(url, json={"disposition": job["disposition"]}, headers={API_KEY_HEADER: job["apikey"]})
    answer.raise_for_status()
