"""One ``process_asset`` event, start to end: validate, load, plan, dispatch, explain; every failure classified.

:func:`handle_event` never raises for a bad message or a backend failure; it returns an :class:`Outcome`:

- ``planned``: the plan was made and every addon to run is on the trigger queue;
- ``asset_not_found``: the backend answered 404 for the asset: nothing to do (logged and recorded);
- ``retry_scheduled``: a transient failure (backend 5xx/429/timeout/connection error, asset ``NOT_READY``, a
  dispatch still in progress or whose send failed, Redis unavailable); the message waits in the delayed queue
  (``common.delayed``) and comes back with ``retries`` + 1;
- ``dead_lettered``: a permanent failure (invalid message, unsupported ``schema_version``, unknown event type,
  undecryptable key, 401/403, malformed settings, other 4xx) or retries exhausted or an unexpected exception.

Only ``redis.RedisError`` escapes, when not even the retry can be scheduled (the task then requeues the message).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import redis
from pydantic import ValidationError

from asset_post_process.common.contract import (
    ASSET_ID_PATTERN,
    EVENT_ID_PATTERN,
    PROCESS_ASSET_TASK,
    AssetEvent,
    EventType,
)
from asset_post_process.common.crypto import ApiKeyCipher, InvalidApiKeyToken
from asset_post_process.common.deadletters import DeadLetter, DeadLetterStore
from asset_post_process.common.decisions import DecisionLog
from asset_post_process.common.delayed import DelayedQueue
from asset_post_process.common.filespin import FileSpinError
from asset_post_process.common.logs import log_context
from asset_post_process.common.metrics import Metrics
from asset_post_process.common.redaction import safe_excerpt
from asset_post_process.common.registry import AddonSpec
from asset_post_process.common.retry import backoff_seconds
from asset_post_process.common.services import Services
from asset_post_process.common.settings import Settings
from asset_post_process.process_worker.dispatch import (
    DEFAULT_LEASE_SECONDS,
    Dispatcher,
    DispatchResult,
    DispatchStatus,
    JobSender,
)
from asset_post_process.process_worker.explain import DecisionRecord, count_skips, entry, log_decisions, queue_skips
from asset_post_process.process_worker.loader import InvalidAssetData, Loader
from asset_post_process.process_worker.planner import plan

log = logging.getLogger("asset_post_process.process_worker")

#: At most this many validation problems are listed in a dead letter's reason.
MAX_LISTED_ERRORS = 5


class Status(StrEnum):
    """How the handling of one event ended."""

    PLANNED = "planned"
    ASSET_NOT_FOUND = "asset_not_found"
    RETRY_SCHEDULED = "retry_scheduled"
    DEAD_LETTERED = "dead_lettered"


class Code(StrEnum):
    """Event-level reason codes (per-addon codes are :class:`~.planner.ReasonCode`)."""

    PLANNED = "planned"
    INVALID_MESSAGE = "invalid_message"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    INVALID_APIKEY = "invalid_apikey"
    AUTH_FAILED = "auth_failed"
    BAD_SETTINGS = "bad_settings"
    BACKEND_REJECTED = "backend_rejected"
    ASSET_NOT_FOUND = "asset_not_found"
    ASSET_NOT_READY = "asset_not_ready"
    BACKEND_UNAVAILABLE = "backend_unavailable"
    DISPATCH_IN_PROGRESS = "dispatch_in_progress"
    DISPATCH_FAILED = "dispatch_failed"
    REDIS_UNAVAILABLE = "redis_unavailable"
    RETRIES_EXHAUSTED = "retries_exhausted"
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True)
class Outcome:
    """The result of handling one event."""

    status: Status
    reason_code: str
    reason: str
    event_id: str | None = None
    asset_id: str | None = None
    records: tuple[DecisionRecord, ...] = ()
    retry_in_seconds: float | None = None
    dead_letter_id: str | None = None

    @property
    def dispatched(self) -> list[str]:
        """Addons whose job this handling sent."""
        return [r.decision.addon for r in self.records if r.outcome == DispatchStatus.DISPATCHED.value]

    def summary(self) -> dict[str, Any]:
        """A small JSON-ready summary (the task's return value; no secrets)."""
        return {
            "status": self.status.value,
            "reason_code": self.reason_code,
            "event_id": self.event_id,
            "dispatched": self.dispatched,
        }


@dataclass
class Context:
    """What :func:`handle_event` works with; one per worker process (every part is thread-safe)."""

    settings: Settings
    cipher: ApiKeyCipher
    registry: Mapping[str, AddonSpec]
    loader: Loader
    dispatcher: Dispatcher
    delayed: DelayedQueue
    dead_letters: DeadLetterStore
    decisions: DecisionLog
    metrics: Metrics
    redis: redis.Redis[bytes]
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def from_services(
        cls, services: Services, send: JobSender, *, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> Context:
        """A context over ``services`` that sends trigger jobs with ``send``."""
        s = services.settings
        return cls(
            settings=s,
            cipher=services.cipher,
            registry=services.registry,
            loader=Loader(
                services.filespin, services.cache, services.cipher, services.keys, s.settings_cache_ttl_seconds
            ),
            dispatcher=Dispatcher(
                services.redis, services.keys, send, dedup_ttl_seconds=s.dedup_ttl_seconds, lease_seconds=lease_seconds
            ),
            delayed=DelayedQueue(services.redis, services.keys),
            dead_letters=services.dead_letters,
            decisions=services.decisions,
            metrics=services.metrics,
            redis=services.redis,
        )


def describe_validation_error(exc: ValidationError) -> tuple[Code, str]:
    """A short reason listing the bad fields (never their values) and the code it deserves."""
    errors = exc.errors(include_input=False, include_url=False, include_context=False)
    fields = [".".join(str(p) for p in e["loc"]) or "message" for e in errors]
    code = Code.INVALID_MESSAGE
    if "schema_version" in fields:
        code = Code.UNSUPPORTED_SCHEMA_VERSION
    elif any(f == "event_type" and e["type"] == "enum" for f, e in zip(fields, errors, strict=True)):
        code = Code.UNKNOWN_EVENT_TYPE
    listed = [f"{f}: {e['msg']}" for f, e in zip(fields, errors, strict=True)][:MAX_LISTED_ERRORS]
    more = len(errors) - len(listed)
    return code, "invalid message: " + "; ".join(listed) + (f" (+{more} more)" if more > 0 else "")


def _ident(message: Any, name: str, pattern: str) -> str | None:
    """``message[name]`` when it is a well-formed id (so nothing odd lands in a dead letter's fields)."""
    value = message.get(name) if isinstance(message, dict) else None
    return value if isinstance(value, str) and re.fullmatch(pattern, value) else None


class _Handling:
    """The state of one handling: the message, its attempt, and once validated the event."""

    def __init__(self, message: Any, attempt: int, ctx: Context) -> None:
        self.message = message
        self.attempt = attempt
        self.ctx = ctx
        self.event: AssetEvent | None = None
        self.event_id: str | None = _ident(message, "event_id", EVENT_ID_PATTERN)
        self.asset_id: str | None = _ident(message, "asset_id", ASSET_ID_PATTERN)

    # -- endings ---------------------------------------------------------------------------------------------

    def dead_letter(self, code: Code, reason: str, status_code: int | None = None) -> Outcome:
        letter = self.ctx.dead_letters.add(
            DeadLetter(
                task=PROCESS_ASSET_TASK,
                queue=self.ctx.settings.process_queue,
                message=self.message,
                reason_code=code.value,
                reason=reason,
                attempts=self.attempt + 1,
                event_id=self.event_id,
                asset_id=self.asset_id,
                status_code=status_code,
            )
        )
        log.error(
            "event dead-lettered: %s",
            letter.reason,
            extra={"outcome": Status.DEAD_LETTERED.value, "reason_code": code.value, "dead_letter_id": letter.id},
        )
        self.record(Status.DEAD_LETTERED, code, letter.reason)
        return Outcome(
            Status.DEAD_LETTERED, code.value, letter.reason, self.event_id, self.asset_id, dead_letter_id=letter.id
        )

    def retry(
        self,
        code: Code,
        reason: str,
        *,
        max_retries: int,
        exhausted: Code = Code.RETRIES_EXHAUSTED,
        retry_after: float | None = None,
        delay: float | None = None,
        records: Sequence[DecisionRecord] = (),
    ) -> Outcome:
        """Schedule the message again through the delayed queue, or dead-letter it once ``max_retries`` ran out."""
        if self.attempt >= max_retries:
            return self.dead_letter(exhausted, f"gave up after {self.attempt + 1} attempts: {reason}")
        s = self.ctx.settings
        if delay is None:
            delay = backoff_seconds(
                self.attempt,
                base=s.retry_backoff_base_seconds,
                cap=s.retry_backoff_max_seconds,
                retry_after=retry_after,
                rng=self.ctx.rng,
            )
        self.ctx.delayed.schedule(PROCESS_ASSET_TASK, s.process_queue, self.message, self.attempt + 1, delay)
        log.warning(
            "event retried later: %s",
            reason,
            extra={
                "outcome": Status.RETRY_SCHEDULED.value,
                "reason_code": code.value,
                "retry_in_seconds": round(delay, 3),
            },
        )
        self.record(Status.RETRY_SCHEDULED, code, reason, records)
        return Outcome(
            Status.RETRY_SCHEDULED,
            code.value,
            reason,
            self.event_id,
            self.asset_id,
            records=tuple(records),
            retry_in_seconds=delay,
        )

    def record(
        self,
        status: Status,
        code: Code,
        reason: str,
        records: Sequence[DecisionRecord] = (),
        *,
        count_skipped: bool = False,
    ) -> None:
        """Keep a decision-log entry for the asset (once the message is valid: its ids are trusted then).

        ``count_skipped``: add the skipped decisions to their ``skipped`` counters in the same round trip; a
        Redis error then propagates when there was one to count (as :func:`count_skips` would), else the entry
        is best effort.
        """
        if self.event is None or self.event_id is None:
            if count_skipped:
                count_skips(self.ctx.metrics, records)
            return
        item = entry(
            self.event,
            self.event_id,
            outcome=status.value,
            reason_code=code.value,
            reason=reason,
            attempt=self.attempt,
            records=records,
        )
        pipe = self.ctx.redis.pipeline()
        skipped = queue_skips(self.ctx.metrics, pipe, records) if count_skipped else 0
        self.ctx.decisions.queue(pipe, self.event.asset_id, item)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            if skipped:
                raise
            # Best effort: the outcome itself (dispatch, retry, dead letter) is already durable.
            log.warning("decision log not recorded (%s)", type(exc).__name__)

    # -- the flow --------------------------------------------------------------------------------------------

    def run(self) -> Outcome:
        if not isinstance(self.message, dict):
            kind = type(self.message).__name__
            return self.dead_letter(Code.INVALID_MESSAGE, f"invalid message: a {kind}, not a JSON object")
        try:
            event = AssetEvent.model_validate(self.message)
        except ValidationError as exc:
            code, reason = describe_validation_error(exc)
            return self.dead_letter(code, reason)
        self.event = event
        self.event_id = event.effective_event_id
        self.asset_id = event.asset_id
        with log_context(event_id=self.event_id, asset_id=event.asset_id, event_type=event.event_type.value):
            return self.run_event(event, self.event_id)

    def run_event(self, event: AssetEvent, event_id: str) -> Outcome:
        ctx = self.ctx
        try:
            apikey = ctx.cipher.decrypt(event.apikey)
        except InvalidApiKeyToken as exc:
            return self.dead_letter(Code.INVALID_APIKEY, str(exc))
        try:
            user_settings = ctx.loader.user_settings(apikey)
        except FileSpinError as exc:
            return self.backend_failure(exc, Code.BAD_SETTINGS)
        try:
            asset = ctx.loader.asset(event, apikey)
        except InvalidAssetData as exc:
            return self.dead_letter(Code.INVALID_MESSAGE, f"invalid message: {exc}")
        except FileSpinError as exc:
            if exc.status_code == 404:
                reason = f"the asset does not exist (any more): {exc.reason}"
                log.info("nothing to do: %s", reason, extra={"outcome": Status.ASSET_NOT_FOUND.value})
                self.record(Status.ASSET_NOT_FOUND, Code.ASSET_NOT_FOUND, reason)
                return Outcome(Status.ASSET_NOT_FOUND, Code.ASSET_NOT_FOUND.value, reason, event_id, event.asset_id)
            return self.backend_failure(exc, Code.BACKEND_REJECTED)
        if event.event_type is not EventType.FILE_DELETED and asset.status == "NOT_READY":
            return self.retry(
                Code.ASSET_NOT_READY,
                "the asset is NOT_READY",
                max_retries=ctx.settings.not_ready_max_retries,
                exhausted=Code.ASSET_NOT_READY,
            )
        decisions = plan(event, asset, user_settings, ctx.registry)
        dispatched = ctx.dispatcher.dispatch_all(event, event_id, [d for d in decisions if d.run])
        results: dict[str, DispatchResult] = {r.addon: r for r in dispatched}
        records = [DecisionRecord.of(d, results.get(d.addon)) for d in decisions]
        log_decisions(event, event_id, records)
        pending = [r for r in results.values() if not r.settled]
        if pending:
            count_skips(ctx.metrics, records)
            return self.retry_dispatch(pending, records)
        reason = f"{len(results)} to run, {len(decisions) - len(results)} skipped"
        # The skip counters ride in the decision log's round trip; a failure to count them still fails the event.
        self.record(Status.PLANNED, Code.PLANNED, reason, records, count_skipped=True)
        log.info("event planned: %s", reason, extra={"outcome": Status.PLANNED.value, "reason_code": "planned"})
        return Outcome(Status.PLANNED, Code.PLANNED.value, reason, event_id, event.asset_id, records=tuple(records))

    def backend_failure(self, exc: FileSpinError, permanent_code: Code) -> Outcome:
        """Retry a transient backend failure; dead-letter a permanent one (401/403: ``auth_failed``)."""
        if exc.transient:
            return self.retry(
                Code.BACKEND_UNAVAILABLE,
                f"{exc.reason} [{exc.code}]",
                max_retries=self.ctx.settings.process_max_retries,
                retry_after=exc.retry_after,
            )
        code = Code.AUTH_FAILED if exc.status_code in (401, 403) else permanent_code
        return self.dead_letter(code, f"{exc.reason} [{exc.code}]", status_code=exc.status_code)

    def retry_dispatch(self, pending: list[DispatchResult], records: Sequence[DecisionRecord]) -> Outcome:
        """Some jobs are not on the trigger queue yet: retry the event (the sent ones are deduplicated then)."""
        in_progress = [r for r in pending if r.status is DispatchStatus.IN_PROGRESS]
        failed = [r for r in pending if r.status is DispatchStatus.SEND_FAILED]
        delay: float | None = None
        if failed:
            code, detail = Code.DISPATCH_FAILED, failed[0].detail
        else:
            code, detail = Code.DISPATCH_IN_PROGRESS, in_progress[0].detail
            s = self.ctx.settings
            backoff = backoff_seconds(
                self.attempt, base=s.retry_backoff_base_seconds, cap=s.retry_backoff_max_seconds, rng=self.ctx.rng
            )
            # Re-check soon, and no later than when the other worker's lease runs out.
            delay = min(backoff, max(r.wait_seconds or 0.0 for r in in_progress) + 1.0)
        addons = ", ".join(r.addon for r in pending)
        return self.retry(
            code,
            f"{addons}: {detail}",
            max_retries=self.ctx.settings.process_max_retries,
            delay=delay,
            records=records,
        )


def handle_event(message: Any, attempt: int, ctx: Context) -> Outcome:
    """Handle one ``process_asset`` message (its ``attempt``-th retry; 0 the first time); see the module doc."""
    handling = _Handling(message, attempt, ctx)
    try:
        return handling.run()
    except redis.RedisError as exc:
        # Redis (cache, marks, decision log) failed mid-way: retry the whole event; if even that
        # cannot be scheduled, the RedisError escapes and the task requeues the message.
        reason = f"Redis unavailable ({type(exc).__name__})"
        return handling.retry(Code.REDIS_UNAVAILABLE, reason, max_retries=ctx.settings.process_max_retries)
    except Exception as exc:
        log.exception("unexpected error while handling an event", extra={"reason_code": Code.INTERNAL_ERROR.value})
        reason = f"unexpected {type(exc).__name__}: {safe_excerpt(str(exc), 200)}"
        return handling.dead_letter(Code.INTERNAL_ERROR, reason)


def handle_task_call(args: Sequence[Any], kwargs: Mapping[str, Any], attempt: int, ctx: Context) -> Outcome:
    """Handle a task call as Celery delivers it: exactly one positional argument is the contract."""
    if len(args) == 1 and not kwargs:
        return handle_event(args[0], attempt, ctx)
    received = {"args": list(args), "kwargs": dict(kwargs)}
    handling = _Handling(received, attempt, ctx)
    reason = f"invalid message: expected one positional argument, got {len(args)} and {len(kwargs)} keyword(s)"
    return handling.dead_letter(Code.INVALID_MESSAGE, reason)
