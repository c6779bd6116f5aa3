"""Dispatch and its dedup marks, on a real Redis, sending through a real Celery app (read back from the queue)."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import pytest
import redis
from celery import Celery

from asset_post_process.common.contract import TRIGGER_ADDON_TASK, Action, AssetEvent, TriggerJob
from asset_post_process.common.keys import Keys
from asset_post_process.common.settings import Settings
from asset_post_process.process_worker.dispatch import (
    DEFAULT_LEASE_SECONDS,
    Dispatcher,
    DispatchStatus,
    JobSender,
    celery_sender,
)
from asset_post_process.process_worker.planner import Decision, ReasonCode

ASSET_ID = "0123456789abcdef0123456789abcdef"
TOKEN = "gAAAAA" + "x" * 120
EVENT = AssetEvent.model_validate(
    {"apikey": TOKEN, "asset_id": ASSET_ID, "event_type": "file-saved", "force_processing": True, "event_id": "ev-1"}
)
DECISION = Decision(
    addon="FACE_RECOGNITION",
    run=True,
    action=Action.PROCESS,
    reason="r",
    reason_code=ReasonCode.RUN,
    disposition={"update_metadata": True},
)


def queued_jobs(client: redis.Redis[bytes], queue: str) -> list[tuple[str, dict[str, Any]]]:
    """(task name, job) of every message on a kombu Redis queue, oldest first."""
    jobs = []
    for raw in reversed(client.lrange(queue, 0, -1)):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        jobs.append((message["headers"]["task"], args[0]))
    return jobs


@pytest.fixture
def dispatcher(redis_client: redis.Redis[bytes], keys: Keys, settings: Settings, celery_app: Celery) -> Dispatcher:
    send = celery_sender(celery_app, settings.trigger_queue)
    return Dispatcher(redis_client, keys, send, dedup_ttl_seconds=settings.dedup_ttl_seconds)


def server_time(client: redis.Redis[bytes]) -> float:
    seconds, micros = client.time()
    return float(seconds) + float(micros) / 1e6


def test_dispatch_sends_one_job_with_the_encrypted_key(
    dispatcher: Dispatcher, redis_client: redis.Redis[bytes], settings: Settings
) -> None:
    result = dispatcher.dispatch(EVENT, "ev-1", DECISION)
    assert result.status is DispatchStatus.DISPATCHED
    assert result.job_id == "ev-1:FACE_RECOGNITION"
    (task, job), *rest = queued_jobs(redis_client, settings.trigger_queue)
    assert rest == []
    assert task == TRIGGER_ADDON_TASK
    parsed = TriggerJob.model_validate(job)
    assert parsed.job_id == TriggerJob.make_job_id("ev-1", "FACE_RECOGNITION")
    assert parsed.apikey == TOKEN
    assert (parsed.event_id, parsed.asset_id, parsed.addon) == ("ev-1", ASSET_ID, "FACE_RECOGNITION")
    assert parsed.action is Action.PROCESS
    assert parsed.disposition == {"update_metadata": True}
    assert parsed.force_processing is True
    assert parsed.event_type is not None
    assert parsed.event_type.value == "file-saved"
    assert parsed.enqueued_at is not None
    assert dispatcher.mark("ev-1", "FACE_RECOGNITION") == "sent"
    # Nothing lands on the process queue (one direct exchange per queue).
    assert redis_client.llen(settings.process_queue) == 0


def test_mark_has_the_dedup_ttl(dispatcher: Dispatcher, redis_client: redis.Redis[bytes], keys: Keys) -> None:
    dispatcher.dispatch(EVENT, "ev-1", DECISION)
    ttl = redis_client.ttl(keys.dedup("ev-1", "FACE_RECOGNITION"))
    assert 0 < ttl <= 7 * 24 * 3600


def test_a_second_dispatch_is_skipped(
    dispatcher: Dispatcher, redis_client: redis.Redis[bytes], settings: Settings
) -> None:
    assert dispatcher.dispatch(EVENT, "ev-1", DECISION).status is DispatchStatus.DISPATCHED
    again = dispatcher.dispatch(EVENT, "ev-1", DECISION)
    assert again.status is DispatchStatus.ALREADY_DISPATCHED
    assert again.settled
    assert len(queued_jobs(redis_client, settings.trigger_queue)) == 1


def test_another_event_or_addon_is_not_deduplicated(
    dispatcher: Dispatcher, redis_client: redis.Redis[bytes], settings: Settings
) -> None:
    dispatcher.dispatch(EVENT, "ev-1", DECISION)
    dispatcher.dispatch(EVENT, "ev-2", DECISION)
    other = Decision("SCENE_CLASSIFICATION", True, Action.PROCESS, "r", ReasonCode.RUN)
    dispatcher.dispatch(EVENT, "ev-1", other)
    ids = [job["job_id"] for _, job in queued_jobs(redis_client, settings.trigger_queue)]
    assert ids == ["ev-1:FACE_RECOGNITION", "ev-2:FACE_RECOGNITION", "ev-1:SCENE_CLASSIFICATION"]


def test_a_fresh_pending_mark_defers(
    dispatcher: Dispatcher, redis_client: redis.Redis[bytes], keys: Keys, settings: Settings
) -> None:
    key = keys.dedup("ev-1", "FACE_RECOGNITION")
    redis_client.set(key, f"pending:{server_time(redis_client):.6f}:other-worker")
    result = dispatcher.dispatch(EVENT, "ev-1", DECISION)
    assert result.status is DispatchStatus.IN_PROGRESS
    assert not result.settled
    assert result.wait_seconds is not None
    assert 0 < result.wait_seconds <= DEFAULT_LEASE_SECONDS
    assert queued_jobs(redis_client, settings.trigger_queue) == []
    assert redis_client.get(key) is not None  # the other worker's mark is left alone
    assert redis_client.get(key).decode().endswith(":other-worker")  # type: ignore[union-attr]


@pytest.mark.parametrize("stale", ["pending:{old}:dead-worker", "garbage"])
def test_a_stale_pending_mark_is_taken_over(
    dispatcher: Dispatcher, redis_client: redis.Redis[bytes], keys: Keys, settings: Settings, stale: str
) -> None:
    # The worker that set this mark was killed between the mark and the send: its job was never sent.
    old = server_time(redis_client) - DEFAULT_LEASE_SECONDS - 5
    redis_client.set(keys.dedup("ev-1", "FACE_RECOGNITION"), stale.format(old=f"{old:.6f}"))
    result = dispatcher.dispatch(EVENT, "ev-1", DECISION)
    assert result.status is DispatchStatus.DISPATCHED
    assert result.took_over
    assert len(queued_jobs(redis_client, settings.trigger_queue)) == 1
    assert dispatcher.mark("ev-1", "FACE_RECOGNITION") == "sent"


def test_a_failed_send_releases_the_mark(
    redis_client: redis.Redis[bytes], keys: Keys, settings: Settings, celery_app: Celery
) -> None:
    def broken(job: dict[str, Any]) -> None:
        raise ConnectionError("broker went away")

    failing = Dispatcher(redis_client, keys, broken, dedup_ttl_seconds=60)
    result = failing.dispatch(EVENT, "ev-1", DECISION)
    assert result.status is DispatchStatus.SEND_FAILED
    assert "ConnectionError" in result.detail
    assert failing.mark("ev-1", "FACE_RECOGNITION") is None
    working = Dispatcher(redis_client, keys, celery_sender(celery_app, settings.trigger_queue), dedup_ttl_seconds=60)
    assert working.dispatch(EVENT, "ev-1", DECISION).status is DispatchStatus.DISPATCHED
    assert len(queued_jobs(redis_client, settings.trigger_queue)) == 1


def test_a_failed_send_does_not_release_a_mark_taken_over_meanwhile(
    redis_client: redis.Redis[bytes], keys: Keys
) -> None:
    key = keys.dedup("ev-1", "FACE_RECOGNITION")

    def slow_and_broken(job: dict[str, Any]) -> None:
        redis_client.set(key, "pending:1.0:someone-else")  # another worker took the mark over meanwhile
        raise ConnectionError("broker went away")

    result = Dispatcher(redis_client, keys, slow_and_broken, dedup_ttl_seconds=60).dispatch(EVENT, "ev-1", DECISION)
    assert result.status is DispatchStatus.SEND_FAILED
    assert redis_client.get(key) == b"pending:1.0:someone-else"


def test_concurrent_duplicates_send_exactly_once(
    redis_client: redis.Redis[bytes], keys: Keys, settings: Settings, celery_app: Celery, redis_url: str
) -> None:
    sent: list[str] = []
    lock = threading.Lock()
    celery_send = celery_sender(celery_app, settings.trigger_queue)

    def send(job: dict[str, Any]) -> None:
        with lock:
            sent.append(job["job_id"])
        celery_send(job)

    results: list[DispatchStatus] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        client: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
        sender: JobSender = send
        d = Dispatcher(client, keys, sender, dedup_ttl_seconds=60)
        barrier.wait(10)
        status = d.dispatch(EVENT, "ev-1", DECISION).status
        with lock:
            results.append(status)
        client.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 8
    assert results.count(DispatchStatus.DISPATCHED) == 1
    assert set(results) <= {DispatchStatus.DISPATCHED, DispatchStatus.IN_PROGRESS, DispatchStatus.ALREADY_DISPATCHED}
    assert sent == ["ev-1:FACE_RECOGNITION"]
    assert len(queued_jobs(redis_client, settings.trigger_queue)) == 1


def test_delete_job(dispatcher: Dispatcher, redis_client: redis.Redis[bytes], settings: Settings) -> None:
    deleted = AssetEvent.model_validate(
        {"apikey": TOKEN, "asset_id": ASSET_ID, "event_type": "file-deleted", "asset_data": {"id": ASSET_ID}}
    )
    decision = Decision("FACE_RECOGNITION", True, Action.DELETE, "r", ReasonCode.DELETE)
    dispatcher.dispatch(deleted, deleted.effective_event_id, decision)
    ((_, job),) = queued_jobs(redis_client, settings.trigger_queue)
    assert job["action"] == "delete"
    assert job["event_type"] == "file-deleted"
    assert job["event_id"] == deleted.effective_event_id


def test_dispatch_all_claims_every_mark_at_once_and_keeps_each_marks_protocol(
    dispatcher: Dispatcher, redis_client: redis.Redis[bytes], keys: Keys, settings: Settings
) -> None:
    scene = Decision("SCENE_CLASSIFICATION", True, Action.PROCESS, "r", ReasonCode.RUN)
    emotion = Decision("EMOTION_RECOGNITION", True, Action.PROCESS, "r", ReasonCode.RUN)
    redis_client.set(keys.dedup("ev-1", "FACE_RECOGNITION"), "sent")
    redis_client.set(keys.dedup("ev-1", "EMOTION_RECOGNITION"), f"pending:{server_time(redis_client):.6f}:other")
    results = dispatcher.dispatch_all(EVENT, "ev-1", [DECISION, scene, emotion])
    assert [(r.addon, r.status) for r in results] == [
        ("FACE_RECOGNITION", DispatchStatus.ALREADY_DISPATCHED),
        ("SCENE_CLASSIFICATION", DispatchStatus.DISPATCHED),
        ("EMOTION_RECOGNITION", DispatchStatus.IN_PROGRESS),
    ]
    assert [job["addon"] for _, job in queued_jobs(redis_client, settings.trigger_queue)] == ["SCENE_CLASSIFICATION"]
    assert dispatcher.mark("ev-1", "SCENE_CLASSIFICATION") == "sent"
    assert 0 < redis_client.ttl(keys.dedup("ev-1", "SCENE_CLASSIFICATION")) <= settings.dedup_ttl_seconds
    assert (dispatcher.mark("ev-1", "EMOTION_RECOGNITION") or "").endswith(":other")
    assert dispatcher.dispatch_all(EVENT, "ev-1", []) == []


def test_dispatch_all_releases_only_the_marks_whose_send_failed(
    redis_client: redis.Redis[bytes], keys: Keys, settings: Settings, celery_app: Celery
) -> None:
    celery_send = celery_sender(celery_app, settings.trigger_queue)

    def flaky(job: dict[str, Any]) -> None:
        if job["addon"] == "FACE_RECOGNITION":
            raise ConnectionError("broker went away")
        celery_send(job)

    scene = Decision("SCENE_CLASSIFICATION", True, Action.PROCESS, "r", ReasonCode.RUN)
    results = Dispatcher(redis_client, keys, flaky, dedup_ttl_seconds=60).dispatch_all(EVENT, "ev-1", [DECISION, scene])
    assert [r.status for r in results] == [DispatchStatus.SEND_FAILED, DispatchStatus.DISPATCHED]
    assert redis_client.get(keys.dedup("ev-1", "FACE_RECOGNITION")) is None
    assert redis_client.get(keys.dedup("ev-1", "SCENE_CLASSIFICATION")) == b"sent"
