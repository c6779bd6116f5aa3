"""The trigger worker end to end: real ``celery worker`` processes, a real Redis, the FileSpin simulator over HTTP.

Jobs are put straight on the stack's trigger queue (a valid ``trigger_addon`` message, as the process worker sends
it); every outcome is checked at the simulator with the exact number of calls, and in the stack's Redis (done marks,
dead letters). Each test runs its own stack with the settings it needs (the shared defaults come from conftest).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from asset_post_process.common.celeryapp import make_producer
from asset_post_process.common.contract import TRIGGER_ADDON_TASK
from asset_post_process.common.crypto import ApiKeyCipher
from asset_post_process.common.deadletters import DeadLetter, DeadLetterStore
from asset_post_process.common.metrics import Metrics
from asset_post_process.devkit import factory
from asset_post_process.devkit.launcher import ServiceStack
from asset_post_process.devkit.simulator import FACE_DELETE, RecordedCall, SimulatorClient, Step

SCENE = "SCENE_CLASSIFICATION"


class TriggerBench:
    """A running stack plus what the tests do with it: make and send jobs, read marks and dead letters."""

    def __init__(self, stack: ServiceStack, account: factory.Account, fernet_key: str, sim: SimulatorClient) -> None:
        self.stack = stack
        self.account = account
        self.sim = sim
        self.cipher = ApiKeyCipher([fernet_key])
        self.app = make_producer(stack.settings)
        self.dead = DeadLetterStore(stack.redis(), stack.keys)
        self.metrics = Metrics(stack.redis(), stack.keys)

    def asset(self) -> str:
        asset = factory.image_asset()
        self.account.add(asset)
        self.sim.put_asset(self.account.apikey, asset)
        return str(asset["id"])

    def job(self, asset_id: str, addon: str = SCENE, action: str = "process") -> dict[str, Any]:
        event_id = f"e2e-{uuid.uuid4().hex[:12]}"
        return {
            "schema_version": 1,
            "job_id": f"{event_id}:{addon}",
            "event_id": event_id,
            "asset_id": asset_id,
            "addon": addon,
            "action": action,
            "apikey": self.cipher.encrypt(self.account.apikey),
            "disposition": {"update_metadata": True, "confidence_threshold": 0.5},
            "force_processing": False,
            "enqueued_at": time.time(),
        }

    def send(self, job: Mapping[str, Any]) -> None:
        self.app.send_task(TRIGGER_ADDON_TASK, args=[dict(job)], queue=self.stack.settings.trigger_queue)

    def done(self, job: Mapping[str, Any]) -> bool:
        return bool(self.stack.redis().exists(self.stack.keys.job_done(str(job["job_id"]))))

    def dead_letters(self, job: Mapping[str, Any] | None = None) -> list[DeadLetter]:
        letters = self.dead.list(limit=1000)
        return [d for d in letters if job is None or d.message.get("job_id") == job["job_id"]]

    def outcome(self, addon: str, outcome: str) -> int:
        return self.metrics.outcomes().get((addon, outcome), 0)

    def calls(self, asset_id: str) -> list[RecordedCall]:
        return self.sim.calls(asset_id=asset_id)

    def close(self) -> None:
        self.app.close()


@pytest.fixture
def trigger_bench(
    stack_factory: Callable[..., ServiceStack],
    new_account: Callable[..., factory.Account],
    fernet_key: str,
    sim: SimulatorClient,
) -> Iterator[Callable[..., TriggerBench]]:
    benches: list[TriggerBench] = []

    def start(**overrides: str) -> TriggerBench:
        stack = stack_factory({f"POSTPROCESS_{k.upper()}": v for k, v in overrides.items()})
        bench = TriggerBench(stack, new_account(), fernet_key, sim)
        benches.append(bench)
        return bench

    yield start
    for bench in benches:
        bench.close()


def test_success_is_one_call_with_the_filespin_headers(
    trigger_bench: Callable[..., TriggerBench], wait_until: Callable[..., Any]
) -> None:
    bench = trigger_bench()
    asset_id = bench.asset()
    job = bench.job(asset_id)
    bench.send(job)
    wait_until(lambda: bench.done(job), timeout=30, message="done mark of the job")
    [call] = bench.calls(asset_id)
    assert call.method == "POST"
    assert call.path == f"/api/v1/assets/{asset_id}/addons/scene_classification"
    assert call.status == 200
    assert call.header("X-FileSpin-Api-Key") == bench.account.apikey
    assert call.header("X-FileSpin-Internal-Request") == "true"
    assert call.json == {"disposition": job["disposition"]}
    assert bench.outcome(SCENE, "done") == 1
    # The same job delivered again (a broker redelivery) is recognised and not called a second time.
    bench.send(job)
    wait_until(lambda: job["job_id"] in _duplicate_lines(bench), timeout=30, message="the duplicate's log line")
    assert len(bench.calls(asset_id)) == 1
    assert bench.dead_letters() == []
    assert bench.account.apikey not in bench.stack.trigger_worker.read_log()


def _duplicate_lines(bench: TriggerBench) -> str:
    return "\n".join(line for line in bench.stack.trigger_worker.read_log().splitlines() if '"duplicate"' in line)


def test_409_is_done_after_one_call_without_a_dead_letter(
    trigger_bench: Callable[..., TriggerBench], wait_until: Callable[..., Any]
) -> None:
    bench = trigger_bench()
    asset_id = bench.asset()
    bench.sim.script_addon(asset_id, "FACE_RECOGNITION", Step(409))
    job = bench.job(asset_id, "FACE_RECOGNITION")
    bench.send(job)
    wait_until(lambda: bench.done(job), timeout=30, message="done mark of the 409 job")
    assert [c.status for c in bench.calls(asset_id)] == [409]
    assert bench.dead_letters() == []
    assert bench.outcome("FACE_RECOGNITION", "done") == 1


def test_503_503_200_is_three_calls_then_done(
    trigger_bench: Callable[..., TriggerBench], wait_until: Callable[..., Any]
) -> None:
    bench = trigger_bench()
    asset_id = bench.asset()
    bench.sim.script_addon(asset_id, SCENE, Step(503), Step(503))
    job = bench.job(asset_id)
    bench.send(job)
    wait_until(lambda: bench.done(job), timeout=60, message="done mark after two 503s")
    assert [c.status for c in bench.calls(asset_id)] == [503, 503, 200]
    assert bench.outcome(SCENE, "retried") == 2
    assert bench.outcome(SCENE, "done") == 1
    assert bench.dead_letters() == []


def test_429_with_retry_after_is_called_again_not_before_it(
    trigger_bench: Callable[..., TriggerBench], wait_until: Callable[..., Any]
) -> None:
    bench = trigger_bench(retry_backoff_max_seconds="10")
    asset_id = bench.asset()
    bench.sim.script_addon(asset_id, SCENE, Step(429, headers={"Retry-After": "2"}))
    job = bench.job(asset_id)
    bench.send(job)
    wait_until(lambda: bench.done(job), timeout=60, message="done mark after a 429")
    first, second = bench.calls(asset_id)
    assert (first.status, second.status) == (429, 200)
    # Retry-After is a floor of the delay: the second call arrived at least 2 s after the first was answered.
    assert second.time - first.time >= 2.0


def test_403_is_one_call_and_a_dead_letter_with_the_status(
    trigger_bench: Callable[..., TriggerBench], wait_until: Callable[..., Any]
) -> None:
    bench = trigger_bench()
    asset_id = bench.asset()
    bench.sim.script_addon(asset_id, SCENE, Step(403, body={"status": "ERROR", "error": "addon not in your plan"}))
    job = bench.job(asset_id)
    bench.send(job)
    [letter] = wait_until(lambda: bench.dead_letters(job), timeout=30, message="the 403 dead letter")
    assert (letter.reason_code, letter.status_code, letter.attempts) == ("http_403", 403, 1)
    assert (letter.task, letter.queue) == (TRIGGER_ADDON_TASK, bench.stack.settings.trigger_queue)
    assert (letter.event_id, letter.asset_id, letter.addon) == (job["event_id"], asset_id, SCENE)
    assert "addon not in your plan" in letter.reason
    assert letter.message == job  # still encrypted, replayable as it came
    assert bench.account.apikey not in letter.to_json()
    assert [c.status for c in bench.calls(asset_id)] == [403]
    assert not bench.done(job)


def test_a_slow_addon_times_out_is_retried_and_then_done_or_dead_lettered(
    trigger_bench: Callable[..., TriggerBench], wait_until: Callable[..., Any], sim: SimulatorClient
) -> None:
    bench = trigger_bench(http_read_timeout="0.5", trigger_max_retries="2")
    slow = Step(200, latency=2.0)
    # Slower than the read timeout twice, then answers in time: 3 calls, done.
    recovers = bench.asset()
    sim.script_addon(recovers, SCENE, slow, slow)
    recovering_job = bench.job(recovers)
    bench.send(recovering_job)
    wait_until(lambda: bench.done(recovering_job), timeout=60, message="done mark after two timeouts")
    assert len(bench.calls(recovers)) == 3
    # Always slower than the read timeout: 1 call + 2 retries, then a dead letter.
    stuck = bench.asset()
    sim.script_addon(stuck, SCENE, slow, slow, slow)
    stuck_job = bench.job(stuck)
    bench.send(stuck_job)
    [letter] = wait_until(lambda: bench.dead_letters(stuck_job), timeout=60, message="the timeout dead letter")
    assert (letter.reason_code, letter.attempts, letter.status_code) == ("retries_exhausted", 3, None)
    assert "timed out" in letter.reason
    assert len(bench.calls(stuck)) == 3
    assert not bench.done(stuck_job)


def test_retries_exhausted_after_the_budget_is_a_dead_letter(
    trigger_bench: Callable[..., TriggerBench], wait_until: Callable[..., Any]
) -> None:
    bench = trigger_bench(trigger_max_retries="2")
    asset_id = bench.asset()
    bench.sim.script_addon(asset_id, SCENE, Step(503), Step(502), Step(500))
    job = bench.job(asset_id)
    bench.send(job)
    [letter] = wait_until(lambda: bench.dead_letters(job), timeout=60, message="the retries_exhausted dead letter")
    assert (letter.reason_code, letter.status_code, letter.attempts) == ("retries_exhausted", 500, 3)
    assert [c.status for c in bench.calls(asset_id)] == [503, 502, 500]


def test_face_data_delete_is_one_call_with_the_asset_id(
    trigger_bench: Callable[..., TriggerBench], wait_until: Callable[..., Any], sim: SimulatorClient
) -> None:
    bench = trigger_bench()
    asset_id = bench.asset()
    job = bench.job(asset_id, "FACE_RECOGNITION", action="delete")
    bench.send(job)
    wait_until(lambda: bench.done(job), timeout=30, message="done mark of the delete")
    [call] = sim.calls(endpoint=FACE_DELETE)
    assert call.path == "/api/v1/assets/addons/face_recognition/delete"
    assert call.json == {"ids": [asset_id]}
    assert call.status == 202
    assert call.header("X-FileSpin-Api-Key") == bench.account.apikey
    assert call.header("X-FileSpin-Internal-Request") == "true"


def test_an_addon_down_for_a_while_recovers_with_calls_bounded_by_the_breaker(
    trigger_bench: Callable[..., TriggerBench], wait_until: Callable[..., Any], sim: SimulatorClient
) -> None:
    threshold, open_seconds, concurrency, jobs = 3, 1.5, 4, 20
    bench = trigger_bench(
        breaker_failure_threshold=str(threshold),
        breaker_open_seconds=str(open_seconds),
        trigger_concurrency=str(concurrency),
        retry_backoff_base_seconds="0.2",
        retry_backoff_max_seconds="1",
        trigger_max_retries="10",
    )
    sim.addon_down(SCENE)  # 503 to every call until it is back
    down_at = time.monotonic()
    assets = [bench.asset() for _ in range(jobs)]
    sent = [bench.job(a) for a in assets]
    for job in sent:
        bench.send(job)
    # Down long enough for several open periods.
    wait_until(lambda: sim.count(addon=SCENE) >= threshold, timeout=30, message="the first failures")
    time.sleep(5 * open_seconds)
    sim.addon_up(SCENE)
    outage = time.monotonic() - down_at
    wait_until(lambda: all(bench.done(j) for j in sent), timeout=90, message="every job done after the outage")

    calls = sim.calls(addon=SCENE)
    failed = [c for c in calls if c.status == 503]
    # While it was down: at most `threshold` failures opened the breaker, plus calls already in flight on the
    # other worker threads, plus one half-open probe per open period (each failed probe re-opens it for a full
    # period), plus the probe at the end that may still have seen it down.
    bound = threshold + (concurrency - 1) + math.floor(outage / open_seconds) + 1
    assert threshold <= len(failed) <= bound, f"{len(failed)} calls during a {outage:.1f}s outage (bound {bound})"
    # Every job was eventually called successfully exactly once, and nothing was dead-lettered.
    assert sorted(c.asset_id or "" for c in calls if c.status == 200) == sorted(assets)
    assert bench.dead_letters() == []
    assert bench.outcome(SCENE, "done") == jobs


def test_a_job_in_flight_when_the_worker_is_killed_comes_back_and_is_done(
    trigger_bench: Callable[..., TriggerBench], wait_until: Callable[..., Any], sim: SimulatorClient
) -> None:
    # With the threads pool a SIGKILL takes the whole worker (no parent survives to requeue at once): the
    # message stays unacknowledged in the broker and is handed out again after the visibility timeout.
    bench = trigger_bench(visibility_timeout_seconds="10", http_read_timeout="60")
    asset_id = bench.asset()
    sim.script_addon(asset_id, SCENE, Step(200, latency=30.0))  # the call the kill interrupts
    job = bench.job(asset_id)
    bench.send(job)
    wait_until(lambda: bench.calls(asset_id), timeout=30, message="the first call reaching the addon")
    bench.stack.trigger_worker.kill()
    bench.stack.trigger_worker.start(timeout=60)
    wait_until(lambda: bench.done(job), timeout=90, message="the redelivered job done")
    calls = bench.calls(asset_id)
    assert len(calls) == 2
    assert calls[1].status == 200
    assert bench.dead_letters() == []
