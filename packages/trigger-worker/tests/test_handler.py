"""handle_job end to end in one process: a real Redis, the FileSpin simulator over real HTTP, no mocks."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet
from redis.backoff import NoBackoff
from redis.retry import Retry

from asset_post_process.common.contract import TRIGGER_ADDON_TASK
from asset_post_process.common.crypto import ApiKeyCipher
from asset_post_process.common.deadletters import DeadLetter
from asset_post_process.common.logs import JsonFormatter
from asset_post_process.common.services import Services
from asset_post_process.common.settings import load_settings
from asset_post_process.devkit.simulator import SimulatorClient, Step, run_simulator
from asset_post_process.trigger_worker.context import TriggerContext
from asset_post_process.trigger_worker.handler import handle_job

PLAIN_KEY = "plain-key-8f3b1c2d9e"
OTHER_KEY = "a-different-key-that-no-one-knows"


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorClient]:
    with run_simulator() as sim:
        yield sim


@pytest.fixture
def sim(simulator: SimulatorClient) -> SimulatorClient:
    simulator.reset()
    simulator.put_user(PLAIN_KEY, {"addons": {}})
    return simulator


class Harness:
    """A context over real services, plus helpers to make jobs and read what happened."""

    def __init__(self, sim: SimulatorClient, redis_url: str, fernet_key: str, **overrides: Any) -> None:
        self.sim = sim
        self.settings = load_settings(
            apikey_keys=fernet_key,
            redis_url=redis_url,
            key_prefix=f"t{uuid.uuid4().hex[:12]}",
            filespin_api_url=sim.base_url,
            retry_backoff_base_seconds=1.0,
            retry_backoff_max_seconds=30.0,
            **overrides,
        )
        self.services = Services.from_settings(self.settings)
        self.ctx = TriggerContext.from_services(self.services)
        self.sleeps: list[float] = []
        self.ctx.sleep = self.sleeps.append
        self.cipher = ApiKeyCipher([fernet_key])

    def asset(self) -> str:
        asset_id = uuid.uuid4().hex
        self.sim.put_asset(PLAIN_KEY, {"id": asset_id, "content_type": "image/jpeg", "data": {}})
        return asset_id

    def job(self, asset_id: str, addon: str = "SCENE_CLASSIFICATION", **extra: Any) -> dict[str, Any]:
        event_id = f"ev-{uuid.uuid4().hex[:8]}"
        return {
            "job_id": f"{event_id}:{addon}",
            "event_id": event_id,
            "asset_id": asset_id,
            "addon": addon,
            "action": "process",
            "apikey": self.cipher.encrypt(PLAIN_KEY),
            "disposition": {"update_metadata": True},
            **extra,
        }

    def delayed(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = [
            json.loads(raw) for raw in self.services.redis.zrange(self.services.keys.delayed, 0, -1)
        ]
        return entries

    def dead_letters(self) -> list[DeadLetter]:
        return self.services.dead_letters.list()

    def outcome_count(self, addon: str, outcome: str) -> int:
        return self.services.metrics.outcomes().get((addon, outcome), 0)


@pytest.fixture
def harness(sim: SimulatorClient, redis_url: str, fernet_key: str) -> Iterator[Harness]:
    h = Harness(sim, redis_url, fernet_key)
    yield h
    h.services.filespin.close()


def make(sim: SimulatorClient, redis_url: str, fernet_key: str, **overrides: Any) -> Harness:
    return Harness(sim, redis_url, fernet_key, **overrides)


def test_success_calls_once_with_the_filespin_headers_and_marks_the_job_done(harness: Harness) -> None:
    asset_id = harness.asset()
    job = harness.job(asset_id)
    result = handle_job(job, 0, harness.ctx)
    assert (result.outcome, result.reason_code, result.status_code) == ("done", "ok", 200)
    calls = harness.sim.calls(asset_id=asset_id)
    assert len(calls) == 1
    call = calls[0]
    assert call.path == f"/api/v1/assets/{asset_id}/addons/scene_classification"
    assert call.header("X-FileSpin-Api-Key") == PLAIN_KEY
    assert call.header("X-FileSpin-Internal-Request") == "true"
    assert call.json == {"disposition": {"update_metadata": True}}
    assert harness.services.redis.exists(harness.services.keys.job_done(job["job_id"]))
    assert harness.outcome_count("SCENE_CLASSIFICATION", "done") == 1
    assert harness.services.metrics.latency("SCENE_CLASSIFICATION").count == 1
    # A redelivery of the same job is not called again.
    again = handle_job(job, 0, harness.ctx)
    assert (again.outcome, again.reason_code) == ("duplicate", "already_done")
    assert harness.sim.count(asset_id=asset_id) == 1


def test_an_async_answer_is_done_with_the_addon_job_id(harness: Harness) -> None:
    asset_id = harness.asset()
    harness.sim.script_addon(asset_id, "SCENE_CLASSIFICATION", Step(202))
    result = handle_job(harness.job(asset_id), 0, harness.ctx)
    assert (result.outcome, result.reason_code, result.status_code) == ("done", "accepted", 202)
    assert result.addon_job_id is not None
    assert result.addon_job_id.startswith("job-")


def test_409_is_done_without_a_dead_letter(harness: Harness) -> None:
    asset_id = harness.asset()
    harness.sim.script_addon(asset_id, "FACE_RECOGNITION", Step(409))
    result = handle_job(harness.job(asset_id, "FACE_RECOGNITION"), 0, harness.ctx)
    assert (result.outcome, result.reason_code) == ("done", "already_processed")
    assert harness.sim.count(asset_id=asset_id) == 1
    assert harness.dead_letters() == []


def test_503_is_rescheduled_through_the_delayed_queue_with_one_more_attempt(harness: Harness) -> None:
    asset_id = harness.asset()
    harness.sim.script_addon(asset_id, "SCENE_CLASSIFICATION", Step(503))
    job = harness.job(asset_id)
    result = handle_job(job, 2, harness.ctx)
    assert (result.outcome, result.reason_code) == ("retried", "http_503")
    [entry] = harness.delayed()
    assert (entry["task"], entry["queue"], entry["retries"]) == (TRIGGER_ADDON_TASK, harness.settings.trigger_queue, 3)
    assert entry["message"] == job
    assert harness.outcome_count("SCENE_CLASSIFICATION", "retried") == 1
    assert not harness.services.redis.exists(harness.services.keys.job_done(job["job_id"]))


def test_retry_after_sets_the_floor_of_the_delay(harness: Harness) -> None:
    asset_id = harness.asset()
    harness.sim.script_addon(asset_id, "SCENE_CLASSIFICATION", Step(429, headers={"Retry-After": "9"}))
    result = handle_job(harness.job(asset_id), 0, harness.ctx)
    assert (result.outcome, result.reason_code) == ("retried", "http_429")
    assert result.delay_seconds is not None
    assert result.delay_seconds >= 9


def test_the_last_transient_failure_is_dead_lettered_retries_exhausted(harness: Harness) -> None:
    asset_id = harness.asset()
    harness.sim.script_addon(asset_id, "SCENE_CLASSIFICATION", Step(500))
    job = harness.job(asset_id)
    result = handle_job(job, harness.settings.trigger_max_retries, harness.ctx)
    assert (result.outcome, result.reason_code, result.status_code) == ("dead_lettered", "retries_exhausted", 500)
    [letter] = harness.dead_letters()
    assert letter.attempts == harness.settings.trigger_max_retries + 1
    assert letter.message == job
    assert harness.delayed() == []


def test_403_is_dead_lettered_with_status_and_excerpt_never_the_key(harness: Harness) -> None:
    asset_id = harness.asset()
    harness.sim.script_addon(
        asset_id, "SCENE_CLASSIFICATION", Step(403, body={"status": "ERROR", "error": "addon not enabled for plan"})
    )
    job = harness.job(asset_id)
    result = handle_job(job, 0, harness.ctx)
    assert (result.outcome, result.reason_code, result.status_code) == ("dead_lettered", "http_403", 403)
    [letter] = harness.dead_letters()
    assert (letter.task, letter.queue, letter.addon, letter.asset_id) == (
        TRIGGER_ADDON_TASK,
        harness.settings.trigger_queue,
        "SCENE_CLASSIFICATION",
        asset_id,
    )
    assert (letter.event_id, letter.status_code, letter.attempts) == (job["event_id"], 403, 1)
    assert "addon not enabled for plan" in letter.reason
    assert letter.replayable
    assert PLAIN_KEY not in letter.to_json()
    assert harness.sim.count(asset_id=asset_id) == 1
    assert harness.delayed() == []


def test_a_message_that_is_not_a_job_is_dead_lettered_invalid(harness: Harness) -> None:
    result = handle_job({"addon": "SCENE_CLASSIFICATION", "asset_id": "nope"}, 0, harness.ctx)
    assert (result.outcome, result.reason_code) == ("dead_lettered", "invalid_message")
    [letter] = harness.dead_letters()
    assert "job_id" in letter.reason
    assert letter.addon == "SCENE_CLASSIFICATION"
    assert harness.sim.count() == 0


def test_an_undecryptable_key_is_dead_lettered_without_a_call(harness: Harness) -> None:
    asset_id = harness.asset()
    foreign = ApiKeyCipher([Fernet.generate_key().decode()])
    result = handle_job(harness.job(asset_id, apikey=foreign.encrypt(OTHER_KEY)), 0, harness.ctx)
    assert (result.outcome, result.reason_code) == ("dead_lettered", "undecryptable_key")
    assert harness.sim.count() == 0


def test_an_unknown_addon_and_a_missing_delete_action_are_dead_lettered(harness: Harness) -> None:
    asset_id = harness.asset()
    unknown = handle_job(harness.job(asset_id, "STORYBOARD"), 0, harness.ctx)
    no_delete = handle_job(harness.job(asset_id, "EMOTION_RECOGNITION", action="delete"), 0, harness.ctx)
    assert unknown.reason_code == "unknown_addon"
    assert no_delete.reason_code == "no_delete_action"
    assert harness.sim.count() == 0
    assert len(harness.dead_letters()) == 2


def test_face_data_delete_posts_the_asset_id(harness: Harness) -> None:
    asset_id = harness.asset()
    result = handle_job(harness.job(asset_id, "FACE_RECOGNITION", action="delete"), 0, harness.ctx)
    assert (result.outcome, result.status_code) == ("done", 202)
    [call] = harness.sim.calls(asset_id=asset_id)
    assert call.path == "/api/v1/assets/addons/face_recognition/delete"
    assert call.json == {"ids": [asset_id]}
    assert call.header("X-FileSpin-Internal-Request") == "true"


def test_a_timeout_is_retried(sim: SimulatorClient, redis_url: str, fernet_key: str) -> None:
    harness = make(sim, redis_url, fernet_key, http_read_timeout=0.3)
    asset_id = harness.asset()
    harness.sim.script_addon(asset_id, "SCENE_CLASSIFICATION", Step(200, latency=2.0))
    result = handle_job(harness.job(asset_id), 0, harness.ctx)
    assert (result.outcome, result.reason_code) == ("retried", "timeout")
    assert len(harness.delayed()) == 1


def test_an_open_breaker_defers_without_calling_or_spending_an_attempt(
    sim: SimulatorClient, redis_url: str, fernet_key: str
) -> None:
    harness = make(sim, redis_url, fernet_key, breaker_failure_threshold=2, breaker_open_seconds=60)
    sim.addon_down("SCENE_CLASSIFICATION")
    first, second, third = (harness.asset() for _ in range(3))
    assert handle_job(harness.job(first), 0, harness.ctx).outcome == "retried"
    assert handle_job(harness.job(second), 0, harness.ctx).outcome == "retried"
    assert harness.ctx.breaker.state("SCENE_CLASSIFICATION") == "open"
    result = handle_job(harness.job(third), 4, harness.ctx)
    assert (result.outcome, result.reason_code) == ("deferred", "breaker_open")
    assert result.delay_seconds is not None
    assert result.delay_seconds > 50
    assert sim.count(asset_id=third) == 0
    deferred = [e for e in harness.delayed() if e["message"]["asset_id"] == third]
    assert [e["retries"] for e in deferred] == [4]
    # Other addons are not affected.
    assert handle_job(harness.job(third, "EMOTION_RECOGNITION"), 0, harness.ctx).outcome == "done"


def test_a_permanent_answer_closes_the_breaker(sim: SimulatorClient, redis_url: str, fernet_key: str) -> None:
    harness = make(sim, redis_url, fernet_key, breaker_failure_threshold=2, breaker_open_seconds=60)
    asset_id = harness.asset()
    harness.sim.script_addon(asset_id, "SCENE_CLASSIFICATION", Step(503), Step(404), Step(503))
    for _ in range(3):
        handle_job(harness.job(asset_id), 0, harness.ctx)
    assert harness.ctx.breaker.state("SCENE_CLASSIFICATION") == "closed"


def test_over_the_rate_limit_a_job_waits_briefly_or_is_deferred(
    sim: SimulatorClient, redis_url: str, fernet_key: str
) -> None:
    # 1 call/s: the second job's slot is ~1 s away (it waits in the task, the bound), the third's ~2 s:
    # rescheduled, not failed, no attempt spent.
    harness = make(sim, redis_url, fernet_key, addon_rate_limit_per_second=1)
    assets = [harness.asset() for _ in range(3)]
    results = [handle_job(harness.job(a), 0, harness.ctx) for a in assets]
    assert [r.outcome for r in results] == ["done", "done", "deferred"]
    assert results[2].reason_code == "rate_limited"
    assert len(harness.sleeps) == 1
    assert 0 < harness.sleeps[0] <= 1.0
    assert sim.count(asset_id=assets[2]) == 0
    assert [e["retries"] for e in harness.delayed()] == [0]


def test_an_unexpected_error_is_dead_lettered_internal(sim: SimulatorClient, redis_url: str, fernet_key: str) -> None:
    harness = make(sim, redis_url, fernet_key, addon_registry={"BROKEN": {"path": "/api/v1/{nope}/x"}})
    result = handle_job(harness.job(harness.asset(), "BROKEN"), 0, harness.ctx)
    assert (result.outcome, result.reason_code) == ("dead_lettered", "internal_error")
    [letter] = harness.dead_letters()
    assert letter.reason == "unexpected KeyError in the trigger worker"


def test_one_log_line_per_outcome_with_context_and_never_the_key(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    asset_id = harness.asset()
    harness.sim.script_addon(asset_id, "SCENE_CLASSIFICATION", Step(503), Step(403))
    job = harness.job(asset_id)
    with caplog.at_level(logging.INFO, logger="asset_post_process.trigger_worker"):
        handle_job(job, 0, harness.ctx)
        handle_job(job, 1, harness.ctx)
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.name == "asset_post_process.trigger_worker"]
    assert [line["outcome"] for line in lines] == ["retried", "dead_lettered"]
    for line, attempt in zip(lines, (1, 2), strict=True):
        assert line["event_id"] == job["event_id"]
        assert line["asset_id"] == asset_id
        assert line["addon"] == "SCENE_CLASSIFICATION"
        assert line["job_id"] == job["job_id"]
        assert line["action"] == "process"
        assert line["attempt"] == attempt
        assert "duration_ms" in line
    assert lines[1]["status_code"] == 403
    assert all(PLAIN_KEY not in formatter.format(r) for r in caplog.records)


def test_redis_errors_propagate_so_the_task_does_not_ack(sim: SimulatorClient, fernet_key: str, redis_url: str) -> None:
    harness = make(sim, redis_url, fernet_key)
    harness.ctx.redis = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.ConnectionError):
        handle_job(harness.job(harness.asset()), 0, harness.ctx)


def count_round_trips(client: redis.Redis[bytes]) -> list[int]:
    """Count what ``client`` sends from now on: one per command or pipeline (the counter is the list's item)."""
    sent = [0]

    class Counting(redis.Connection):
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            sent[0] += 1
            super().send_packed_command(command, check_health)

    client.connection_pool.connection_class = Counting
    client.connection_pool.reset()
    return sent


def test_a_job_that_is_called_and_done_costs_two_redis_round_trips(
    sim: SimulatorClient, redis_url: str, fernet_key: str
) -> None:
    # The rate limit lifted: a slot that lies ahead adds the breaker's acquire after the wait (one more).
    harness = make(sim, redis_url, fernet_key, addon_rate_limit_per_second=1_000_000)
    sent = count_round_trips(harness.services.redis)
    handle_job(harness.job(harness.asset()), 0, harness.ctx)  # the first job connects and loads the scripts
    before = sent[0]
    job = harness.job(harness.asset())
    assert handle_job(job, 0, harness.ctx).outcome == "done"
    assert sent[0] - before == 2  # the gate script; one pipeline (latency, breaker, done mark, done count)
    before = sent[0]
    assert handle_job(job, 0, harness.ctx).outcome == "duplicate"
    assert sent[0] - before == 1
    assert harness.services.redis.exists(harness.services.keys.job_done(job["job_id"]))
    assert harness.outcome_count("SCENE_CLASSIFICATION", "done") == 2
    assert harness.services.metrics.latency("SCENE_CLASSIFICATION").count == 2
