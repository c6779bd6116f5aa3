"""Dispatch: one ``trigger_addon`` job per addon to run, exactly once per (event, addon).

The dedup mark ``Keys.dedup(event_id, addon)`` goes through two states, so that nothing is lost and nothing
is sent twice even when a worker is SIGKILLed anywhere in between:

1. **claim** (one Lua script, atomic; one call claims the marks of all the event's addons): no mark -> set
   ``pending:<redis time>:<token>`` and send; mark ``sent`` -> skip ("already dispatched"); a ``pending`` mark
   younger than the lease -> another worker is sending it right now: the event is retried a little later; a
   ``pending`` mark older than the lease -> its worker died between claim and send: take the mark over and send.
2. **send** the job to the trigger queue; if the send raises, the mark is deleted (only if it is still ours)
   and the event is retried later.
3. **mark sent**: ``SET sent`` (TTL ``POSTPROCESS_DEDUP_TTL_SECONDS``), for every job the event sent, in one
   pipeline after the sends.

A worker killed between 2 and 3 leaves a ``pending`` mark: the redelivered event sends the job again after the
lease, with the same ``job_id``; the trigger worker's done mark (``Keys.job_done``) makes that harmless.
Times are Redis server time, so workers on different hosts agree on a mark's age.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis
from celery import Celery

from asset_post_process.common.contract import TRIGGER_ADDON_TASK, AssetEvent, TriggerJob
from asset_post_process.common.keys import Keys
from asset_post_process.process_worker.planner import Decision

log = logging.getLogger(__name__)

#: How long a ``pending`` mark protects a dispatch in progress before another worker may take it over.
DEFAULT_LEASE_SECONDS = 30.0

SENT = "sent"

_CLAIM = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local mine = 'pending:' .. string.format('%.6f', t) .. ':' .. ARGV[1]
local ttl = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
local answers = {}
for i, key in ipairs(KEYS) do
  local current = redis.call('get', key)
  if not current then
    redis.call('set', key, mine, 'EX', ttl)
    answers[i] = {'claimed', mine}
  elseif current == 'sent' then
    answers[i] = {'sent', current}
  else
    local since = tonumber(string.match(current, '^pending:([%d%.]+):'))
    if since == nil or t - since >= lease then
      redis.call('set', key, mine, 'EX', ttl)
      answers[i] = {'taken_over', mine}
    else
      answers[i] = {'busy', string.format('%.3f', lease - (t - since))}
    end
  end
end
return answers
"""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

JobSender = Callable[[dict[str, Any]], None]
"""``send(job)``: puts one JSON-ready ``trigger_addon`` job on the trigger queue."""


def celery_sender(app: Celery, queue: str) -> JobSender:
    """A :data:`JobSender` that sends ``trigger_addon`` through ``app`` to ``queue``."""

    def send(job: dict[str, Any]) -> None:
        app.send_task(TRIGGER_ADDON_TASK, args=[job], queue=queue)

    return send


class DispatchStatus(StrEnum):
    """What happened to one run decision."""

    DISPATCHED = "dispatched"
    ALREADY_DISPATCHED = "already_dispatched"
    IN_PROGRESS = "in_progress"
    SEND_FAILED = "send_failed"


@dataclass(frozen=True)
class DispatchResult:
    """The result of dispatching one addon: ``status``, the job id, and for a deferral how long to wait."""

    addon: str
    job_id: str
    status: DispatchStatus
    took_over: bool = False
    wait_seconds: float | None = None
    detail: str = ""

    @property
    def settled(self) -> bool:
        """Whether the job is on the trigger queue (sent now or by an earlier delivery)."""
        return self.status in (DispatchStatus.DISPATCHED, DispatchStatus.ALREADY_DISPATCHED)


class Dispatcher:
    """Claims the dedup mark of (event, addon), sends the job, marks it sent."""

    def __init__(
        self,
        client: redis.Redis[bytes],
        keys: Keys,
        send: JobSender,
        *,
        dedup_ttl_seconds: int,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._send = send
        self._ttl = dedup_ttl_seconds
        self._lease = lease_seconds
        self._clock = clock
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)

    def build_job(self, event: AssetEvent, event_id: str, decision: Decision) -> TriggerJob:
        """The ``trigger_addon`` job of a run decision; the API key stays the message's encrypted token."""
        return TriggerJob(
            job_id=TriggerJob.make_job_id(event_id, decision.addon),
            event_id=event_id,
            asset_id=event.asset_id,
            addon=decision.addon,
            action=decision.action,
            apikey=event.apikey,
            disposition=decision.disposition,
            force_processing=event.force_processing,
            event_type=event.event_type,
            enqueued_at=self._clock(),
        )

    def dispatch(self, event: AssetEvent, event_id: str, decision: Decision) -> DispatchResult:
        """Send the job of ``decision`` unless (event, addon) was already dispatched; never twice.

        Raises ``redis.RedisError`` when the mark cannot be claimed (nothing was sent then).
        """
        [result] = self.dispatch_all(event, event_id, [decision])
        return result

    def dispatch_all(self, event: AssetEvent, event_id: str, decisions: Sequence[Decision]) -> list[DispatchResult]:
        """:meth:`dispatch` for every decision of one event (one result each, in order), in two round trips.

        Every mark is claimed by one script call, each claimed job is sent, and the sent ones are marked ``sent``
        in one pipeline: each (event, addon) mark goes through the same states as with :meth:`dispatch`.
        Raises ``redis.RedisError`` when the marks cannot be claimed (nothing was sent then).
        """
        if not decisions:
            return []
        if len({d.addon for d in decisions}) != len(decisions):
            # An addon twice (the planner never does it): one after the other, so the second sees the first's mark.
            return [result for d in decisions for result in self.dispatch_all(event, event_id, [d])]
        keys = [self._keys.dedup(event_id, d.addon) for d in decisions]
        answers = self._claim(keys=keys, args=[uuid.uuid4().hex, self._ttl, self._lease])
        results: list[DispatchResult] = []
        sent: list[str] = []
        for decision, key, (state_raw, value_raw) in zip(decisions, keys, answers, strict=True):
            result = self._send_claimed(event, event_id, decision, key, _text(state_raw), _text(value_raw))
            if result.status is DispatchStatus.DISPATCHED:
                sent.append(key)
            results.append(result)
        if sent:
            try:
                pipe = self._redis.pipeline(transaction=False)
                for key in sent:
                    pipe.set(key, SENT, ex=self._ttl)
                pipe.execute()
            except redis.RedisError as exc:
                # Sent but not marked: a redelivery re-sends after the lease; the trigger worker's done mark dedups.
                log.warning("trigger job sent but its dedup mark not set (%s)", type(exc).__name__)
        return results

    def _send_claimed(
        self, event: AssetEvent, event_id: str, decision: Decision, key: str, state: str, value: str
    ) -> DispatchResult:
        """Act on one claim answer: skip, defer, or send (releasing the mark when the send fails)."""
        job_id = TriggerJob.make_job_id(event_id, decision.addon)
        if state == SENT:
            return DispatchResult(decision.addon, job_id, DispatchStatus.ALREADY_DISPATCHED)
        if state == "busy":
            return DispatchResult(
                decision.addon,
                job_id,
                DispatchStatus.IN_PROGRESS,
                wait_seconds=max(0.0, float(value)),
                detail="another worker is dispatching this job",
            )
        took_over = state == "taken_over"
        job = self.build_job(event, event_id, decision).model_dump(mode="json")
        try:
            self._send(job)
        except Exception as exc:
            self._release_quietly(key, value)
            return DispatchResult(
                decision.addon,
                job_id,
                DispatchStatus.SEND_FAILED,
                took_over=took_over,
                detail=f"sending the trigger job failed ({type(exc).__name__})",
            )
        return DispatchResult(decision.addon, job_id, DispatchStatus.DISPATCHED, took_over=took_over)

    def mark(self, event_id: str, addon: str) -> str | None:
        """The current dedup mark of (event, addon), for tests and operators."""
        raw = self._redis.get(self._keys.dedup(event_id, addon))
        return None if raw is None else raw.decode()

    def _release_quietly(self, key: str, value: str) -> None:
        try:
            self._release(keys=[key], args=[value])
        except redis.RedisError as exc:
            # The pending mark expires into a takeover after the lease: the job is still sent once.
            log.warning("dedup mark not released after a failed send (%s)", type(exc).__name__)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
