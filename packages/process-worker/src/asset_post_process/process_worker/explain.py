"""Explain: every decision as one JSON log line, and the latest decisions per asset in Redis.

A decision-log entry (``DecisionLog.record(asset_id, entry)``, read back by the CLI's ``explain`` and the demo)::

    {
      "event_id": "d-...", "event_type": "file-saved", "at": 1764775000.12, "force_processing": false,
      "attempt": 0,
      "outcome": "planned" | "asset_not_found" | "retry_scheduled" | "dead_lettered",
      "reason_code": "...", "reason": "...",        # why the event ended this way ("planned": "planned")
      "decisions": [                                # empty unless the plan was made
        {"addon": "FACE_RECOGNITION", "run": true, "action": "process", "reason": "...", "reason_code": "run",
         "dispatched": true, "outcome": "dispatched"}
      ]
    }

A decision's ``outcome`` is ``dispatched`` (sent now), ``already_dispatched`` (sent by an earlier delivery of the
same event), ``skipped`` (the plan said no), ``deferred`` (to be sent when the event is retried); ``dispatched``
is true when the job is on the trigger queue (the first two).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from asset_post_process.common.contract import AssetEvent
from asset_post_process.common.metrics import Metrics
from asset_post_process.process_worker.dispatch import DispatchResult, DispatchStatus
from asset_post_process.process_worker.planner import Decision

log = logging.getLogger("asset_post_process.process_worker.decisions")

SKIPPED = "skipped"
DEFERRED = "deferred"


@dataclass(frozen=True)
class DecisionRecord:
    """A planning decision together with what dispatch made of it."""

    decision: Decision
    outcome: str
    dispatched: bool

    @classmethod
    def of(cls, decision: Decision, result: DispatchResult | None) -> DecisionRecord:
        """Combine ``decision`` with its dispatch ``result`` (``None`` for a skip)."""
        if not decision.run or result is None:
            return cls(decision, SKIPPED if not decision.run else DEFERRED, False)
        if result.settled:
            return cls(decision, result.status.value, True)
        return cls(decision, DEFERRED, False)

    def to_entry(self) -> dict[str, Any]:
        """The decision's item in a decision-log entry (no disposition: it is the user's data)."""
        d = self.decision
        return {
            "addon": d.addon,
            "run": d.run,
            "action": d.action.value,
            "reason": d.reason,
            "reason_code": d.reason_code.value,
            "dispatched": self.dispatched,
            "outcome": self.outcome,
        }


def dispatch_detail(result: DispatchResult) -> str:
    """Human text for a dispatch result that is not a plain success."""
    if result.status is DispatchStatus.ALREADY_DISPATCHED:
        return "already dispatched for this event"
    return result.detail


def log_decisions(event: AssetEvent, event_id: str, records: Sequence[DecisionRecord]) -> None:
    """One JSON log line per decision."""
    for record in records:
        d = record.decision
        log.info(
            "%s %s: %s",
            d.addon,
            record.outcome,
            d.reason,
            extra={
                "event_id": event_id,
                "asset_id": event.asset_id,
                "addon": d.addon,
                "event_type": event.event_type.value,
                "action": d.action.value,
                "outcome": record.outcome,
                "reason": d.reason,
                "reason_code": d.reason_code.value,
            },
        )


def count_skips(metrics: Metrics, records: Sequence[DecisionRecord]) -> None:
    """Count every skipped decision in the per-addon ``skipped`` counter."""
    for record in records:
        if record.outcome == SKIPPED:
            metrics.count_outcome(record.decision.addon, "skipped")


def queue_skips(metrics: Metrics, pipe: redis.client.Pipeline[Any], records: Sequence[DecisionRecord]) -> int:
    """:func:`count_skips` as commands queued on ``pipe`` (executed by the caller); returns how many."""
    skipped = [record for record in records if record.outcome == SKIPPED]
    for record in skipped:
        metrics.queue_outcome(pipe, record.decision.addon, "skipped")
    return len(skipped)


def entry(
    event: AssetEvent,
    event_id: str,
    *,
    outcome: str,
    reason_code: str,
    reason: str,
    attempt: int,
    records: Sequence[DecisionRecord] = (),
    at: float | None = None,
) -> dict[str, Any]:
    """A decision-log entry (see the module docstring for its shape)."""
    return {
        "event_id": event_id,
        "event_type": event.event_type.value,
        "at": time.time() if at is None else at,
        "force_processing": event.force_processing,
        "attempt": attempt,
        "outcome": outcome,
        "reason_code": reason_code,
        "reason": reason,
        "decisions": [record.to_entry() for record in records],
    }
