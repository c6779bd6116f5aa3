"""The thin ``trigger_addon`` task on a real Celery app, run eagerly: arguments, retries count, Redis down."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery.exceptions import Reject

from asset_post_process.common.celeryapp import make_celery
from asset_post_process.common.contract import TRIGGER_ADDON_TASK
from asset_post_process.common.crypto import ApiKeyCipher
from asset_post_process.common.services import Services
from asset_post_process.common.settings import load_settings
from asset_post_process.devkit.simulator import SimulatorClient, Step, run_simulator
from asset_post_process.trigger_worker import tasks
from asset_post_process.trigger_worker.context import TriggerContext
from asset_post_process.trigger_worker.tasks import register_tasks

KEY = "task-test-key-1234"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorClient]:
    with run_simulator() as client:
        client.put_user(KEY, {"addons": {}})
        yield client


@pytest.fixture
def ctx(sim: SimulatorClient, redis_url: str, fernet_key: str) -> Iterator[TriggerContext]:
    settings = load_settings(
        apikey_keys=fernet_key,
        redis_url=redis_url,
        key_prefix=f"t{uuid.uuid4().hex[:12]}",
        filespin_api_url=sim.base_url,
    )
    context = TriggerContext.from_services(Services.from_settings(settings))
    yield context
    context.filespin.close()


def job(ctx: TriggerContext, sim: SimulatorClient, fernet_key: str) -> dict[str, Any]:
    asset_id = uuid.uuid4().hex
    sim.put_asset(KEY, {"id": asset_id, "content_type": "image/png", "data": {}})
    return {
        "job_id": f"ev1:{asset_id}",
        "event_id": "ev1",
        "asset_id": asset_id,
        "addon": "SCENE_CLASSIFICATION",
        "action": "process",
        "apikey": ApiKeyCipher([fernet_key]).encrypt(KEY),
    }


def test_the_task_is_registered_under_its_contract_name(ctx: TriggerContext) -> None:
    app = make_celery("t", ctx.settings)
    task = register_tasks(app, lambda: ctx)
    assert task.name == TRIGGER_ADDON_TASK
    assert app.tasks[TRIGGER_ADDON_TASK].name == TRIGGER_ADDON_TASK
    assert task.acks_late


def test_request_retries_is_the_attempt_count(ctx: TriggerContext, sim: SimulatorClient, fernet_key: str) -> None:
    task = register_tasks(make_celery("t", ctx.settings), lambda: ctx)
    message = job(ctx, sim, fernet_key)
    sim.script_addon(message["asset_id"], "SCENE_CLASSIFICATION", Step(503))
    task.apply(args=[message], retries=3).get()
    [raw] = ctx.redis.zrange(ctx.keys.delayed, 0, -1)
    assert json.loads(raw)["retries"] == 4


def test_wrong_arguments_are_dead_lettered_not_lost(ctx: TriggerContext) -> None:
    task = register_tasks(make_celery("t", ctx.settings), lambda: ctx)
    task.apply(args=[{"a": 1}, {"b": 2}]).get()
    task.apply(kwargs={"job": {}}).get()
    letters = ctx.dead_letters.list()
    assert [d.reason_code for d in letters] == ["invalid_message", "invalid_message"]
    assert {json.dumps(d.message, sort_keys=True) for d in letters} == {
        json.dumps({"args": [{"a": 1}, {"b": 2}], "kwargs": {}}, sort_keys=True),
        json.dumps({"args": [], "kwargs": {"job": {}}}, sort_keys=True),
    }


def test_redis_down_rejects_with_requeue(
    ctx: TriggerContext, sim: SimulatorClient, fernet_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    message = job(ctx, sim, fernet_key)
    ctx.redis = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr(tasks, "REDIS_DOWN_PAUSE_SECONDS", 0.0)
    task = register_tasks(make_celery("t", ctx.settings), lambda: ctx)
    with pytest.raises(Reject) as caught:
        task.run(message)
    assert caught.value.requeue
    assert sim.count(asset_id=message["asset_id"]) == 0
