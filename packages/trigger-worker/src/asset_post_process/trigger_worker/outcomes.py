"""What an addon's answer means: done, retry later, or dead letter; and when to retry.

- 2xx: done (a ``{"job_id": ...}`` answer is accepted async work, still done for this service);
- 409: done, the addon already processed the asset;
- 429, 5xx, timeouts and connection errors: retried with backoff (``Retry-After`` honoured) until the
  budget is spent, then dead-lettered ``retries_exhausted``;
- anything else (400, 401, 403, 404, 405, 422, ...): dead-lettered at once with the status and a safe
  excerpt of the answer. FileSpin's sticky limit punishes clients that repeat invalid requests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from asset_post_process.common.filespin import AddonCallResult, FileSpinError
from asset_post_process.common.retry import backoff_seconds

RETRIES_EXHAUSTED = "retries_exhausted"


class Verdict(StrEnum):
    """The three ways a call can end."""

    DONE = "done"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True)
class Outcome:
    """A classified answer: the verdict, a stable ``reason_code`` and a human (redacted) ``reason``."""

    verdict: Verdict
    reason_code: str
    reason: str
    status_code: int | None = None
    retry_after: float | None = None
    addon_job_id: str | None = None

    @property
    def addon_answered(self) -> bool:
        """Whether the addon is up (it answered something other than a transient failure)."""
        return self.verdict is not Verdict.RETRY


def classify_result(result: AddonCallResult) -> Outcome:
    """The outcome of a call that returned 2xx or 409."""
    if result.already_processed:
        return Outcome(Verdict.DONE, "already_processed", "addon answered 409: already processed", 409)
    if result.job_id is not None:
        return Outcome(
            Verdict.DONE,
            "accepted",
            f"addon accepted the work as job {result.job_id}",
            result.status_code,
            addon_job_id=result.job_id,
        )
    return Outcome(Verdict.DONE, "ok", f"addon answered {result.status_code}", result.status_code)


def classify_error(error: FileSpinError) -> Outcome:
    """The outcome of a call that failed (``error.reason`` is already redacted and excerpted)."""
    verdict = Verdict.RETRY if error.transient else Verdict.DEAD
    return Outcome(verdict, error.code, error.reason, error.status_code, retry_after=error.retry_after)


@dataclass(frozen=True)
class RetryPolicy:
    """How many retries a job gets and how long each waits."""

    max_retries: int
    base_seconds: float
    cap_seconds: float

    def delay(self, attempt: int, outcome: Outcome, rng: random.Random | None = None) -> float | None:
        """Seconds before retry number ``attempt`` (0-based), or ``None`` when the budget is spent."""
        if attempt >= self.max_retries:
            return None
        return backoff_seconds(
            attempt, base=self.base_seconds, cap=self.cap_seconds, retry_after=outcome.retry_after, rng=rng
        )


def exhausted(outcome: Outcome, attempts: int) -> Outcome:
    """The dead-letter outcome of a transient failure that ran out of retries."""
    return Outcome(
        Verdict.DEAD,
        RETRIES_EXHAUSTED,
        f"gave up after {attempts} attempts; last: {outcome.reason}",
        outcome.status_code,
    )
