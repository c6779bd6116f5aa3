"""One trigger job, start to end: validate, build, gate (done mark, breaker, rate limit), call, classify, act.

Redis round trips of a job that is called and done: the gate script before the call, one pipeline after it
(latency, breaker success, done mark, done count).

Every path ends in exactly one of: ``done`` (done mark set), ``retried`` (rescheduled with one attempt
more), ``deferred`` (rescheduled by the rate limit or the breaker, no attempt spent), ``dead_lettered``,
or ``duplicate`` (the job already succeeded; nothing called). Each logs one JSON line.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import redis
from pydantic import ValidationError

from asset_post_process.common.contract import TRIGGER_ADDON_TASK, Action, TriggerJob
from asset_post_process.common.crypto import InvalidApiKeyToken, PlainApiKey
from asset_post_process.common.deadletters import DeadLetter
from asset_post_process.common.filespin import FileSpinError
from asset_post_process.common.logs import log_context
from asset_post_process.common.redaction import safe_excerpt
from asset_post_process.trigger_worker.breaker import Admission, Gate
from asset_post_process.trigger_worker.context import HALF_OPEN_POLL_SECONDS, TriggerContext
from asset_post_process.trigger_worker.gate import Step
from asset_post_process.trigger_worker.outcomes import (
    Outcome,
    Verdict,
    classify_error,
    classify_result,
    exhausted,
)
from asset_post_process.trigger_worker.request import AddonRequest, PermanentJobError, build_request

log = logging.getLogger("asset_post_process.trigger_worker")


@dataclass(frozen=True)
class JobResult:
    """How a job ended (for the task, the tests and the log line)."""

    outcome: str
    reason_code: str
    status_code: int | None = None
    delay_seconds: float | None = None
    dead_letter_id: str | None = None
    addon_job_id: str | None = None


class _Run:
    """The state of one job run: its message, attempt and clock, and the ways it can end."""

    def __init__(self, ctx: TriggerContext, message: Any, attempt: int, job: TriggerJob | None) -> None:
        self.ctx = ctx
        self.message = message
        self.attempt = attempt
        self.job = job
        self.started = time.perf_counter()

    def _fields(self, **extra: Any) -> dict[str, Any]:
        fields: dict[str, Any] = {"addon": self._addon()}
        if self.job is not None:
            job = self.job
            fields.update(event_id=job.event_id, asset_id=job.asset_id, job_id=job.job_id, action=job.action.value)
        fields.update(attempt=self.attempt + 1, duration_ms=round((time.perf_counter() - self.started) * 1000, 1))
        fields.update(extra)
        return {k: v for k, v in fields.items() if v is not None}

    def _addon(self) -> str | None:
        if self.job is not None:
            return self.job.addon
        addon = self.message.get("addon") if isinstance(self.message, dict) else None
        return addon if isinstance(addon, str) and len(addon) <= 64 else None

    def dead_letter(self, reason_code: str, reason: str, status_code: int | None = None) -> JobResult:
        """Store the message as a dead letter and count it."""
        job, addon = self.job, self._addon()
        letter = self.ctx.dead_letters.add(
            DeadLetter(
                task=TRIGGER_ADDON_TASK,
                queue=self.ctx.settings.trigger_queue,
                message=self.message,
                reason_code=reason_code,
                reason=reason,
                attempts=self.attempt + 1,
                event_id=job.event_id if job else None,
                asset_id=job.asset_id if job else None,
                addon=addon,
                status_code=status_code,
            )
        )
        if addon:
            self.ctx.metrics.count_outcome(addon, "dead_lettered")
        log.warning(
            "trigger job dead-lettered: %s",
            reason_code,
            extra=self._fields(
                outcome="dead_lettered",
                reason_code=reason_code,
                reason=letter.reason,
                status_code=status_code,
                dead_letter_id=letter.id,
            ),
        )
        return JobResult("dead_lettered", reason_code, status_code, dead_letter_id=letter.id)

    def reschedule(self, outcome: str, reason_code: str, reason: str, delay: float, *, spend: bool) -> JobResult:
        """Send the message back through the delayed queue; ``spend`` counts an attempt."""
        assert self.job is not None
        retries = self.attempt + 1 if spend else self.attempt
        self.ctx.delayed.schedule(TRIGGER_ADDON_TASK, self.ctx.settings.trigger_queue, self.message, retries, delay)
        self.ctx.metrics.count_outcome(self.job.addon, outcome)
        log.info(
            "trigger job %s in %.2fs: %s",
            outcome,
            delay,
            reason_code,
            extra=self._fields(
                outcome=outcome, reason_code=reason_code, reason=reason, retry_in_seconds=round(delay, 3)
            ),
        )
        return JobResult(outcome, reason_code, delay_seconds=delay)

    def queue_done(self, pipe: redis.client.Pipeline[Any]) -> None:
        """Queue the done mark (a redelivery will not call again) and the ``done`` count on ``pipe``."""
        assert self.job is not None
        ctx = self.ctx
        pipe.set(ctx.keys.job_done(self.job.job_id), b"1", ex=ctx.settings.dedup_ttl_seconds)
        ctx.metrics.queue_outcome(pipe, self.job.addon, "done")

    def done(self, outcome: Outcome) -> JobResult:
        """Log a job whose done mark and count :meth:`queue_done` queued (and the caller executed)."""
        assert self.job is not None
        log.info(
            "trigger job done: %s",
            outcome.reason_code,
            extra=self._fields(
                outcome="done",
                reason_code=outcome.reason_code,
                reason=outcome.reason,
                status_code=outcome.status_code,
                addon_job_id=outcome.addon_job_id,
            ),
        )
        return JobResult("done", outcome.reason_code, outcome.status_code, addon_job_id=outcome.addon_job_id)


def _jitter(spread: float) -> float:
    return random.uniform(0.0, spread)  # noqa: S311 - spreading retries, not cryptography


def handle_job(message: Any, attempt: int, ctx: TriggerContext) -> JobResult:
    """Run one ``trigger_addon`` message (``attempt`` = retries so far). Never raises but for Redis errors.

    A Redis error propagates: without Redis nothing can be recorded, so the task hands the message back to
    the broker rather than acknowledging it.
    """
    try:
        job = TriggerJob.model_validate(message)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in exc.errors(include_input=False)
        )
        return _Run(ctx, message, attempt, None).dead_letter("invalid_message", safe_excerpt(problems, 500))
    run = _Run(ctx, message, attempt, job)
    with log_context(
        event_id=job.event_id, asset_id=job.asset_id, addon=job.addon, job_id=job.job_id, action=job.action.value
    ):
        try:
            return _handle(run, job)
        except redis.RedisError:
            raise
        except Exception as exc:
            log.exception("trigger job failed unexpectedly")
            return run.dead_letter("internal_error", f"unexpected {type(exc).__name__} in the trigger worker")


def _handle(run: _Run, job: TriggerJob) -> JobResult:
    ctx = run.ctx
    try:
        request = build_request(job, ctx.registry)
        apikey = ctx.cipher.decrypt(job.apikey)
    except Exception as exc:
        # The done mark is checked first, as ever: a job that already succeeded is a duplicate, whatever else.
        if ctx.redis.exists(ctx.keys.job_done(job.job_id)):
            return _duplicate(run)
        if isinstance(exc, PermanentJobError):
            return run.dead_letter(exc.reason_code, exc.reason)
        if isinstance(exc, InvalidApiKeyToken):
            return run.dead_letter("undecryptable_key", str(exc))
        raise

    # One script: done mark, breaker peek (a job the breaker would hold back takes no rate-limit slot and no
    # thread time waiting for one), rate-limit slot, and the breaker's atomic acquire when the slot is now.
    passage = ctx.gate.admit(job.job_id, job.addon, client=ctx.redis)
    if passage.step is Step.DUPLICATE:
        return _duplicate(run)
    if passage.step is Step.HELD:
        assert passage.admission is not None
        return _breaker_deferral(run, passage.admission)
    if passage.step is Step.LIMITED:
        assert passage.permit is not None
        delay = passage.permit.wait_seconds + _jitter(0.5)
        return run.reschedule("deferred", "rate_limited", "addon rate limit reached", delay, spend=False)
    if passage.step is Step.WAIT:
        assert passage.permit is not None
        ctx.sleep(passage.permit.wait_seconds)
        admission = ctx.breaker.acquire(job.addon)
        if not admission.allowed:
            return _breaker_deferral(run, admission)
    else:
        assert passage.admission is not None
        admission = passage.admission

    outcome, seconds = _call(ctx, request, apikey, job.addon)
    del apikey
    # One pipeline for the latency, the breaker's success, the done mark and the done count.
    pipe = ctx.redis.pipeline(transaction=False)
    ctx.metrics.queue_latency(pipe, job.addon, seconds)
    if outcome.addon_answered:
        ctx.breaker.queue_success(pipe, job.addon)
    if outcome.verdict is Verdict.DONE:
        run.queue_done(pipe)
    pipe.execute()
    if not outcome.addon_answered and ctx.breaker.record_failure(job.addon) and admission.gate is Gate.PROBE:
        log.info("circuit breaker probe failed; breaker open again", extra=run._fields(reason_code=outcome.reason_code))

    if outcome.verdict is Verdict.DONE:
        return run.done(outcome)
    if outcome.verdict is Verdict.DEAD:
        return run.dead_letter(outcome.reason_code, outcome.reason, outcome.status_code)
    retry_in = ctx.policy.delay(run.attempt, outcome)
    if retry_in is None:
        final = exhausted(outcome, run.attempt + 1)
        return run.dead_letter(final.reason_code, final.reason, final.status_code)
    return run.reschedule("retried", outcome.reason_code, outcome.reason, retry_in, spend=True)


def _duplicate(run: _Run) -> JobResult:
    log.info(
        "trigger job already done; not called again",
        extra=run._fields(outcome="duplicate", reason_code="already_done"),
    )
    return JobResult("duplicate", "already_done")


def _breaker_deferral(run: _Run, admission: Admission) -> JobResult:
    """Reschedule a job the breaker holds back, for when the breaker may let it through; no attempt spent."""
    if admission.gate is Gate.OPEN:
        delay = admission.wait_seconds + _jitter(min(1.0, run.ctx.settings.breaker_open_seconds / 4))
        reason = "circuit breaker open"
    else:
        # Ask again soon, but not so often that many waiting jobs churn the queue while a slow probe runs.
        poll = max(HALF_OPEN_POLL_SECONDS, run.ctx.settings.breaker_open_seconds / 4)
        delay = min(admission.wait_seconds, poll) + _jitter(poll / 4)
        reason = "circuit breaker half-open: another job probes the addon"
    return run.reschedule("deferred", f"breaker_{admission.gate.value}", reason, delay, spend=False)


def _call(ctx: TriggerContext, request: AddonRequest, apikey: PlainApiKey, addon: str) -> tuple[Outcome, float]:
    """Call the addon: its classified outcome and how long the call took (recorded by the caller)."""
    started = time.perf_counter()
    try:
        if request.action is Action.DELETE:
            result = ctx.filespin.delete_addon_data(apikey, request.url, list(request.ids), request.what)
        else:
            result = ctx.filespin.post_addon(apikey, request.url, request.body, request.what)
        outcome = classify_result(result)
    except FileSpinError as err:
        outcome = classify_error(err)
    except BaseException:
        ctx.metrics.observe_latency(addon, time.perf_counter() - started)
        raise
    return outcome, time.perf_counter() - started
