"""Classification of addon answers and the retry budget."""

from __future__ import annotations

import random

import httpx
import pytest

from asset_post_process.common.filespin import AddonCallResult, FileSpinError, error_from_response
from asset_post_process.trigger_worker.outcomes import (
    RETRIES_EXHAUSTED,
    RetryPolicy,
    Verdict,
    classify_error,
    classify_result,
    exhausted,
)


def answer(status: int, text: str = "", headers: dict[str, str] | None = None) -> FileSpinError:
    request = httpx.Request("POST", "https://api.example.test/x")
    return error_from_response(httpx.Response(status, text=text, headers=headers, request=request), "ADDON process")


def test_2xx_is_done() -> None:
    outcome = classify_result(AddonCallResult(200, None, already_processed=False, elapsed_seconds=0.1))
    assert (outcome.verdict, outcome.reason_code, outcome.status_code) == (Verdict.DONE, "ok", 200)


def test_an_async_job_id_is_accepted_work() -> None:
    outcome = classify_result(AddonCallResult(202, "job-77", already_processed=False, elapsed_seconds=0.1))
    assert (outcome.verdict, outcome.reason_code, outcome.addon_job_id) == (Verdict.DONE, "accepted", "job-77")


def test_409_is_done_already_processed() -> None:
    outcome = classify_result(AddonCallResult(409, None, already_processed=True, elapsed_seconds=0.1))
    assert (outcome.verdict, outcome.reason_code, outcome.status_code) == (Verdict.DONE, "already_processed", 409)
    assert outcome.addon_answered


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_429_and_5xx_are_retried(status: int) -> None:
    outcome = classify_error(answer(status))
    assert outcome.verdict is Verdict.RETRY
    assert outcome.reason_code == f"http_{status}"
    assert not outcome.addon_answered


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 422])
def test_client_errors_are_dead_lettered_with_status_and_excerpt(status: int) -> None:
    outcome = classify_error(answer(status, '{"error": "feature not available for this account"}'))
    assert outcome.verdict is Verdict.DEAD
    assert outcome.status_code == status
    assert "feature not available" in outcome.reason
    assert outcome.addon_answered


@pytest.mark.parametrize("code", ["timeout", "connection_error"])
def test_transport_failures_are_retried(code: str) -> None:
    outcome = classify_error(FileSpinError("ADDON process: timed out", transient=True, code=code))
    assert (outcome.verdict, outcome.reason_code, outcome.status_code) == (Verdict.RETRY, code, None)


def test_retry_after_is_carried_and_is_a_floor_of_the_delay() -> None:
    outcome = classify_error(answer(429, headers={"Retry-After": "7"}))
    assert outcome.retry_after == 7.0
    policy = RetryPolicy(max_retries=5, base_seconds=0.1, cap_seconds=60)
    rng = random.Random(1)
    assert all(policy.delay(0, outcome, rng) >= 7.0 for _ in range(50))  # type: ignore[operator]


def test_the_budget_runs_out_after_max_retries() -> None:
    policy = RetryPolicy(max_retries=3, base_seconds=1, cap_seconds=10)
    outcome = classify_error(answer(503))
    delays = [policy.delay(attempt, outcome, random.Random(attempt)) for attempt in range(4)]
    assert all(d is not None and 0 < d <= 10 for d in delays[:3])
    assert delays[3] is None
    final = exhausted(outcome, 4)
    assert (final.verdict, final.reason_code, final.status_code) == (Verdict.DEAD, RETRIES_EXHAUSTED, 503)
    assert "4 attempts" in final.reason


def test_zero_retries_means_the_first_transient_failure_is_final() -> None:
    assert RetryPolicy(max_retries=0, base_seconds=1, cap_seconds=10).delay(0, classify_error(answer(500))) is None
