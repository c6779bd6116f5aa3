"""Every outcome of handle_event, against the FileSpin simulator, a real Redis and a real Celery app."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
import redis
from celery import Celery

from asset_post_process.common.crypto import ApiKeyCipher
from asset_post_process.common.deadletters import DeadLetter
from asset_post_process.common.keys import Keys
from asset_post_process.common.services import Services
from asset_post_process.common.settings import Settings
from asset_post_process.devkit.simulator import ASSET_DATA, SETTINGS, SimulatorClient, Step
from asset_post_process.process_worker.dispatch import celery_sender
from asset_post_process.process_worker.handler import Code, Context, Outcome, Status, handle_event, handle_task_call

ASSET_ID = "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f"
KEY = "plain-key-that-must-never-leak-0042"
FR, SCENE, EMOTION = "FACE_RECOGNITION", "SCENE_CLASSIFICATION", "EMOTION_RECOGNITION"


def addon(hooks: dict[str, Any], *, enabled: bool = True) -> dict[str, Any]:
    return {
        "added": True,
        "enabled": enabled,
        "settings": {"event-hooks": hooks, "disposition": {"update_metadata": True}},
    }


IMAGE_HOOK = {"enabled": True, "content_types": ["image/*"]}
USER = {
    "addons": {
        FR: addon({"file-saved": IMAGE_HOOK, "file-deleted": IMAGE_HOOK}),
        SCENE: addon({"file-saved": IMAGE_HOOK, "file-deleted": IMAGE_HOOK}),
        EMOTION: addon({"file-saved": IMAGE_HOOK}, enabled=False),
    }
}
ASSET = {"id": ASSET_ID, "status": "OK", "content_type": "image/jpeg", "data": {}}


@pytest.fixture
def cipher(settings: Settings) -> ApiKeyCipher:
    return ApiKeyCipher(settings.fernet_keys)


@pytest.fixture
def ctx(services: Services, celery_app: Celery, settings: Settings, sim: SimulatorClient) -> Context:
    sim.put_user(KEY, USER)
    sim.put_asset(KEY, ASSET)
    return Context.from_services(services, celery_sender(celery_app, settings.trigger_queue))


@pytest.fixture
def message(cipher: ApiKeyCipher) -> Any:
    def build(event_type: str = "file-saved", **fields: Any) -> dict[str, Any]:
        base: dict[str, Any] = {"apikey": cipher.encrypt(KEY), "asset_id": ASSET_ID, "event_type": event_type}
        base.update(fields)
        return base

    return build


def trigger_jobs(client: redis.Redis[bytes], queue: str) -> list[dict[str, Any]]:
    jobs = []
    for raw in reversed(client.lrange(queue, 0, -1)):
        args, _, _ = json.loads(base64.b64decode(json.loads(raw)["body"]))
        jobs.append(args[0])
    return jobs


def delayed_entries(client: redis.Redis[bytes], keys: Keys) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in client.zrange(keys.delayed, 0, -1)]


def only_dead_letter(services: Services) -> DeadLetter:
    (letter,) = services.dead_letters.list()
    return letter


# ------------------------------------------------------------------------------------------- the happy path


def test_file_saved_dispatches_and_explains(
    ctx: Context,
    message: Any,
    services: Services,
    redis_client: redis.Redis[bytes],
    settings: Settings,
    sim: SimulatorClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    msg = message(event_id="evt-1")
    with caplog.at_level(logging.INFO):
        outcome = handle_event(msg, 0, ctx)
    assert outcome.status is Status.PLANNED
    assert sorted(outcome.dispatched) == [FR, SCENE]
    jobs = trigger_jobs(redis_client, settings.trigger_queue)
    assert sorted(j["addon"] for j in jobs) == [FR, SCENE]
    assert all(j["apikey"] == msg["apikey"] for j in jobs)  # still encrypted
    assert all(j["job_id"] == f"evt-1:{j['addon']}" for j in jobs)
    assert sim.counts() == {SETTINGS: 1, ASSET_DATA: 1}

    (entry,) = services.decisions.latest(ASSET_ID)
    assert entry["event_id"] == "evt-1"
    assert entry["event_type"] == "file-saved"
    assert entry["outcome"] == "planned"
    assert entry["force_processing"] is False
    assert isinstance(entry["at"], float)
    by_addon = {d["addon"]: d for d in entry["decisions"]}
    assert by_addon[FR] == {
        "addon": FR,
        "run": True,
        "action": "process",
        "reason": by_addon[FR]["reason"],
        "reason_code": "run",
        "dispatched": True,
        "outcome": "dispatched",
    }
    assert set(by_addon) == {FR, SCENE}  # EMOTION is not enabled: not a candidate

    lines = [r for r in caplog.records if getattr(r, "addon", None) and getattr(r, "reason_code", None)]
    assert sorted(r.addon for r in lines) == [FR, SCENE]  # type: ignore[attr-defined]
    for r in lines:
        assert r.event_id == "evt-1"  # type: ignore[attr-defined]
        assert r.asset_id == ASSET_ID  # type: ignore[attr-defined]
        assert r.outcome == "dispatched"  # type: ignore[attr-defined]
    assert KEY not in caplog.text


def test_skips_are_counted_and_explained(ctx: Context, message: Any, services: Services) -> None:
    outcome = handle_event(message(addons=[EMOTION, "UNKNOWN_ADDON"]), 0, ctx)
    assert outcome.status is Status.PLANNED
    assert outcome.dispatched == []
    codes = {r.decision.addon: (r.outcome, r.decision.reason_code.value) for r in outcome.records}
    assert codes == {EMOTION: ("skipped", "addon_not_enabled"), "UNKNOWN_ADDON": ("skipped", "unknown_addon")}
    counters = services.metrics.outcomes()
    assert counters[(EMOTION, "skipped")] == 1
    assert counters[("UNKNOWN_ADDON", "skipped")] == 1


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


def test_an_event_costs_four_redis_round_trips_whatever_its_addons(
    ctx: Context, message: Any, services: Services, redis_client: redis.Redis[bytes], settings: Settings
) -> None:
    sent = count_round_trips(services.redis)
    handle_event(message(event_id="evt-0"), 0, ctx)  # connects, caches the settings, loads the script
    before = sent[0]
    outcome = handle_event(message(event_id="evt-1", addons=[FR, SCENE, EMOTION]), 0, ctx)
    # The settings cache read, one claim script for both marks, one pipeline marking both sent, and one
    # for the decision-log entry with the skip counter (the sends go through the broker's own connection).
    assert sent[0] - before == 4
    assert sorted(outcome.dispatched) == [FR, SCENE]
    assert {r.decision.addon: r.outcome for r in outcome.records}[EMOTION] == "skipped"
    assert services.metrics.outcomes()[(EMOTION, "skipped")] == 1
    assert [e["event_id"] for e in services.decisions.latest(ASSET_ID)] == ["evt-1", "evt-0"]
    for addon_key in (FR, SCENE):
        assert redis_client.get(services.keys.dedup("evt-1", addon_key)) == b"sent"
    assert len(trigger_jobs(redis_client, settings.trigger_queue)) == 4


def test_a_duplicated_event_dispatches_once(
    ctx: Context, message: Any, redis_client: redis.Redis[bytes], settings: Settings, services: Services
) -> None:
    msg = message()  # no event_id: the derived one is the same for the same message
    first = handle_event(msg, 0, ctx)
    second = handle_event(msg, 0, ctx)
    assert first.event_id == second.event_id
    assert sorted(first.dispatched) == [FR, SCENE]
    assert second.dispatched == []
    assert {r.outcome for r in second.records} == {"already_dispatched"}
    assert all(r.dispatched for r in second.records)
    assert len(trigger_jobs(redis_client, settings.trigger_queue)) == 2
    assert [e["decisions"][0]["outcome"] for e in services.decisions.latest(ASSET_ID)] == [
        "already_dispatched",
        "dispatched",
    ]


def test_the_asset_is_judged_on_its_current_data(
    ctx: Context, message: Any, sim: SimulatorClient, redis_client: redis.Redis[bytes], settings: Settings
) -> None:
    assert sorted(handle_event(message(), 0, ctx).dispatched) == [FR, SCENE]
    sim.put_asset(KEY, {**ASSET, "data": {"_filespin_fr_count": 2}})
    outcome = handle_event(message(), 0, ctx)
    assert outcome.dispatched == [SCENE]  # a new event (a new token, so a new derived id); SCENE not processed yet
    fr = next(r for r in outcome.records if r.decision.addon == FR)
    assert fr.decision.reason_code.value == "already_processed"
    forced = handle_event(message(force_processing=True), 0, ctx)
    assert FR in forced.dispatched
    assert sim.count(endpoint=ASSET_DATA) == 3
    assert sim.count(endpoint=SETTINGS) == 1  # settings come from the cache


def test_file_deleted_sends_delete_jobs_without_asking_for_the_asset(
    ctx: Context, message: Any, sim: SimulatorClient, redis_client: redis.Redis[bytes], settings: Settings
) -> None:
    outcome = handle_event(message("file-deleted", asset_data=ASSET), 0, ctx)
    assert outcome.status is Status.PLANNED
    assert outcome.dispatched == [FR]
    scene = next(r for r in outcome.records if r.decision.addon == SCENE)
    assert scene.decision.reason_code.value == "no_delete_action"
    (job,) = trigger_jobs(redis_client, settings.trigger_queue)
    assert job["action"] == "delete"
    assert sim.count(endpoint=ASSET_DATA) == 0


# ------------------------------------------------------------------------------------------- invalid input


@pytest.mark.parametrize("raw", ["just a string", ["a", "list"], 42, None, 1.5, True])
def test_a_message_that_is_not_an_object_is_dead_lettered(ctx: Context, services: Services, raw: Any) -> None:
    outcome = handle_event(raw, 0, ctx)
    assert outcome.status is Status.DEAD_LETTERED
    letter = only_dead_letter(services)
    assert letter.reason_code == "invalid_message"
    assert type(raw).__name__ in letter.reason
    assert letter.message == raw
    assert letter.task == "process_asset"
    assert letter.queue == services.settings.process_queue


def test_invalid_fields_are_listed_without_their_values(ctx: Context, services: Services, sim: SimulatorClient) -> None:
    raw = {"apikey": KEY, "asset_id": "not-hex", "event_type": "file-saved", "force_processing": "sure", "x": 1}
    outcome = handle_event(raw, 0, ctx)
    assert outcome.reason_code == "invalid_message"
    letter = only_dead_letter(services)
    assert "asset_id" in letter.reason
    assert "force_processing" in letter.reason
    assert "not-hex" not in letter.reason
    assert KEY not in letter.to_json()  # a plaintext key sent by mistake is not kept
    assert letter.asset_id is None
    assert sim.count() == 0


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"schema_version": 2}, "unsupported_schema_version"),
        ({"event_type": "file-exploded"}, "unknown_event_type"),
        ({"event_type": "file-deleted"}, "invalid_message"),  # without asset_data
        ({"addons": "FACE_RECOGNITION"}, "invalid_message"),
        ({"asset_id": None}, "invalid_message"),
    ],
)
def test_permanent_message_problems(
    ctx: Context, message: Any, services: Services, fields: dict[str, Any], code: str
) -> None:
    outcome = handle_event(message(**fields), 0, ctx)
    assert outcome.status is Status.DEAD_LETTERED
    assert outcome.reason_code == code
    assert only_dead_letter(services).reason_code == code


def test_a_tampered_token_is_dead_lettered_still_encrypted(
    ctx: Context, message: Any, services: Services, sim: SimulatorClient
) -> None:
    msg = message()
    token = msg["apikey"]
    msg["apikey"] = token[:-8] + ("A" if token[-8] != "A" else "B") + token[-7:]
    outcome = handle_event(msg, 0, ctx)
    assert outcome.reason_code == "invalid_apikey"
    letter = only_dead_letter(services)
    assert letter.message["apikey"] == msg["apikey"]
    assert letter.asset_id == ASSET_ID
    assert sim.count() == 0


def test_wrong_arity_is_dead_lettered(ctx: Context, message: Any, services: Services) -> None:
    outcome = handle_task_call([message(), "extra"], {}, 0, ctx)
    assert outcome.reason_code == "invalid_message"
    assert "one positional argument" in only_dead_letter(services).reason
    assert handle_task_call([], {"message": message()}, 0, ctx).status is Status.DEAD_LETTERED


def test_a_huge_message_is_dead_lettered_as_an_excerpt(ctx: Context, message: Any, services: Services) -> None:
    huge = message(event_type="bogus", padding="x" * 400_000)
    assert handle_event(huge, 0, ctx).status is Status.DEAD_LETTERED
    letter = only_dead_letter(services)
    assert letter.replayable is False
    assert len(json.dumps(letter.message)) < 10_000


# ------------------------------------------------------------------------------------------- the backend


def test_unauthorized_is_permanent_and_asked_once(
    ctx: Context, message: Any, services: Services, sim: SimulatorClient, cipher: ApiKeyCipher
) -> None:
    outcome = handle_event(message(apikey=cipher.encrypt("a-key-filespin-does-not-know")), 0, ctx)
    assert outcome.reason_code == "auth_failed"
    letter = only_dead_letter(services)
    assert letter.status_code == 401
    assert sim.count() == 1


def test_forbidden_asset_is_permanent(ctx: Context, message: Any, services: Services, sim: SimulatorClient) -> None:
    sim.script_asset_data(Step(403), asset_id=ASSET_ID)
    assert handle_event(message(), 0, ctx).reason_code == "auth_failed"
    assert only_dead_letter(services).status_code == 403


def test_malformed_settings_are_dead_lettered(
    ctx: Context, message: Any, services: Services, sim: SimulatorClient
) -> None:
    sim.script_settings(Step(200, body={"addons": "everything"}))
    assert handle_event(message(), 0, ctx).reason_code == "bad_settings"
    assert only_dead_letter(services).reason_code == "bad_settings"


def test_other_client_errors_are_dead_lettered(
    ctx: Context, message: Any, services: Services, sim: SimulatorClient
) -> None:
    sim.script_asset_data(Step(422), asset_id=ASSET_ID)
    assert handle_event(message(), 0, ctx).reason_code == "backend_rejected"


def test_asset_not_found_is_nothing_to_do(
    ctx: Context, message: Any, services: Services, sim: SimulatorClient, redis_client: redis.Redis[bytes]
) -> None:
    sim.delete_asset(ASSET_ID)
    outcome = handle_event(message(), 0, ctx)
    assert outcome.status is Status.ASSET_NOT_FOUND
    assert services.dead_letters.count() == 0
    (entry,) = services.decisions.latest(ASSET_ID)
    assert entry["outcome"] == "asset_not_found"
    assert entry["decisions"] == []
    assert delayed_entries(redis_client, services.keys) == []


@pytest.mark.parametrize("step", [Step(503), Step(500), Step(429), Step(200, action="close")])
def test_transient_backend_failures_are_retried_later(
    ctx: Context, message: Any, services: Services, sim: SimulatorClient, redis_client: redis.Redis[bytes], step: Step
) -> None:
    sim.script_settings(step)
    msg = message()
    outcome = handle_event(msg, 3, ctx)
    assert outcome.status is Status.RETRY_SCHEDULED
    assert outcome.reason_code == "backend_unavailable"
    (entry,) = delayed_entries(redis_client, services.keys)
    assert entry["task"] == "process_asset"
    assert entry["queue"] == services.settings.process_queue
    assert entry["message"] == msg  # the original message, key still encrypted
    assert entry["retries"] == 4
    assert services.dead_letters.count() == 0
    assert services.decisions.latest(ASSET_ID)[0]["outcome"] == "retry_scheduled"


def test_retry_after_is_a_floor(
    ctx: Context, message: Any, sim: SimulatorClient, services: Services, redis_client: redis.Redis[bytes]
) -> None:
    sim.script_asset_data(Step(429, headers={"Retry-After": "4"}), asset_id=ASSET_ID)
    outcome = handle_event(message(), 0, ctx)
    assert outcome.retry_in_seconds is not None
    assert outcome.retry_in_seconds >= 4


def test_a_timeout_is_retried(
    make_settings: Any, message: Any, sim: SimulatorClient, celery_app: Celery, redis_client: redis.Redis[bytes]
) -> None:
    settings = make_settings(http_read_timeout=0.3)
    services = Services.from_settings(settings)
    ctx = Context.from_services(services, celery_sender(celery_app, settings.trigger_queue))
    sim.put_user(KEY, USER)
    sim.put_asset(KEY, ASSET)
    sim.script_asset_data(Step(action="hang", latency=2.0), asset_id=ASSET_ID)
    outcome = handle_event(message(), 0, ctx)
    assert outcome.status is Status.RETRY_SCHEDULED
    assert "timeout" in outcome.reason


def test_retries_run_out(ctx: Context, message: Any, services: Services, sim: SimulatorClient) -> None:
    sim.script_settings(Step(503))
    last = services.settings.process_max_retries
    outcome = handle_event(message(), last, ctx)
    assert outcome.status is Status.DEAD_LETTERED
    letter = only_dead_letter(services)
    assert letter.reason_code == "retries_exhausted"
    assert letter.attempts == last + 1


def test_not_ready_is_retried_then_dead_lettered(
    ctx: Context, message: Any, services: Services, sim: SimulatorClient, redis_client: redis.Redis[bytes]
) -> None:
    sim.put_asset(KEY, {**ASSET, "status": "NOT_READY"})
    first = handle_event(message(), 0, ctx)
    assert (first.status, first.reason_code) == (Status.RETRY_SCHEDULED, "asset_not_ready")
    assert [e["retries"] for e in delayed_entries(redis_client, services.keys)] == [1]
    final = handle_event(message(), services.settings.not_ready_max_retries, ctx)
    assert (final.status, final.reason_code) == (Status.DEAD_LETTERED, "asset_not_ready")


# ------------------------------------------------------------------------------------------- dispatch trouble


def test_a_dispatch_in_progress_elsewhere_is_rechecked_later(
    ctx: Context, message: Any, services: Services, redis_client: redis.Redis[bytes], settings: Settings
) -> None:
    seconds, micros = redis_client.time()
    redis_client.set(services.keys.dedup("evt-9", FR), f"pending:{seconds + micros / 1e6:.6f}:elsewhere")
    outcome = handle_event(message(event_id="evt-9"), 0, ctx)
    assert (outcome.status, outcome.reason_code) == (Status.RETRY_SCHEDULED, "dispatch_in_progress")
    outcomes = {r.decision.addon: r.outcome for r in outcome.records}
    assert outcomes == {FR: "deferred", SCENE: "dispatched"}
    assert [j["addon"] for j in trigger_jobs(redis_client, settings.trigger_queue)] == [SCENE]
    assert outcome.retry_in_seconds is not None
    assert outcome.retry_in_seconds <= 31


def test_a_failed_send_is_retried_and_sends_once_later(
    services: Services, message: Any, sim: SimulatorClient, celery_app: Celery, redis_client: redis.Redis[bytes]
) -> None:
    sim.put_user(KEY, USER)
    sim.put_asset(KEY, ASSET)
    settings = services.settings

    def broken(job: dict[str, Any]) -> None:
        raise OSError("broker unreachable")

    msg = message(event_id="evt-5")
    outcome = handle_event(msg, 0, Context.from_services(services, broken))
    assert (outcome.status, outcome.reason_code) == (Status.RETRY_SCHEDULED, "dispatch_failed")
    assert redis_client.get(services.keys.dedup("evt-5", FR)) is None
    working = Context.from_services(services, celery_sender(celery_app, settings.trigger_queue))
    assert sorted(handle_event(msg, 1, working).dispatched) == [FR, SCENE]
    assert len(trigger_jobs(redis_client, settings.trigger_queue)) == 2


def test_an_unexpected_error_is_dead_lettered(
    ctx: Context, message: Any, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    class Exploding(dict[str, Any]):
        def get(self, key: str, default: Any = None) -> Any:
            raise RuntimeError(f"boom with {KEY}")

    ctx.registry = Exploding()
    outcome = handle_event(message(), 0, ctx)
    assert (outcome.status, outcome.reason_code) == (Status.DEAD_LETTERED, "internal_error")
    letter = only_dead_letter(services)
    assert "RuntimeError" in letter.reason
    assert KEY not in letter.reason


def test_redis_down_escapes_for_a_requeue(
    make_settings: Any, message: Any, sim: SimulatorClient, celery_app: Celery
) -> None:
    from asset_post_process.devkit.ports import free_port

    dead = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    services = Services.from_settings(dead)
    ctx = Context.from_services(services, celery_sender(celery_app, dead.trigger_queue))
    sim.put_user(KEY, USER)
    with pytest.raises(redis.RedisError):
        handle_event(message(), 0, ctx)


def test_summary_is_small_and_secret_free(ctx: Context, message: Any) -> None:
    outcome: Outcome = handle_event(message(event_id="evt-s"), 0, ctx)
    summary = outcome.summary()
    assert summary["status"] == "planned"
    assert summary["event_id"] == "evt-s"
    assert KEY not in json.dumps(summary)
    assert Code.PLANNED.value == summary["reason_code"]
