"""The producer and the Celery factory against a real Redis broker."""

from __future__ import annotations

import base64
import json
import pickle
import uuid

import pytest
import redis
from pydantic import ValidationError

from asset_post_process.common.celeryapp import make_celery
from asset_post_process.common.crypto import ApiKeyCipher, InvalidApiKeyToken, generate_key
from asset_post_process.common.producer import EventProducer
from asset_post_process.common.settings import Settings, load_settings

ASSET_ID = "0123456789abcdef0123456789abcdef"
PLAINTEXT = "producer-plaintext-key"


@pytest.fixture
def settings(redis_url: str, fernet_key: str) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    return load_settings(
        redis_url=redis_url,
        apikey_keys=fernet_key,
        process_queue=f"test-process-{suffix}",
        trigger_queue=f"test-trigger-{suffix}",
    )


def queued_messages(client: redis.Redis[bytes], queue: str) -> list[dict[str, object]]:
    return [json.loads(raw) for raw in client.lrange(queue, 0, -1)]


def test_enqueue_encrypts_a_plaintext_key_and_sends_json(settings: Settings, redis_client: redis.Redis[bytes]) -> None:
    producer = EventProducer.from_settings(settings)
    event_id = producer.enqueue_asset_event(apikey=PLAINTEXT, asset_id=ASSET_ID, event_type="file-saved")
    [envelope] = queued_messages(redis_client, settings.process_queue)
    assert envelope["headers"]["task"] == "process_asset"
    assert envelope["content-type"] == "application/json"
    args, kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
    [message] = args
    assert kwargs == {}
    assert message["event_id"] == event_id
    assert message["asset_id"] == ASSET_ID
    assert ApiKeyCipher(settings.fernet_keys).decrypt(message["apikey"]).reveal() == PLAINTEXT
    assert PLAINTEXT.encode() not in b"".join(redis_client.lrange(settings.process_queue, 0, -1))
    producer.close()


def test_a_token_passes_as_is_and_a_foreign_one_is_refused(settings: Settings) -> None:
    producer = EventProducer.from_settings(settings)
    token = ApiKeyCipher(settings.fernet_keys).encrypt(PLAINTEXT)
    assert producer.encrypted(token) == token
    foreign = ApiKeyCipher([generate_key()]).encrypt(PLAINTEXT)
    with pytest.raises(InvalidApiKeyToken):
        producer.encrypted(foreign)


def test_invalid_events_never_reach_the_queue(settings: Settings, redis_client: redis.Redis[bytes]) -> None:
    producer = EventProducer.from_settings(settings)
    with pytest.raises(ValidationError):
        producer.enqueue_asset_event(apikey=PLAINTEXT, asset_id="nope", event_type="file-saved")
    with pytest.raises(ValidationError):
        producer.enqueue_asset_event(apikey=PLAINTEXT, asset_id=ASSET_ID, event_type="file-deleted")
    assert redis_client.llen(settings.process_queue) == 0


def test_celery_app_speaks_json_only_with_reliable_defaults(settings: Settings) -> None:
    app = make_celery("t", settings)
    conf = app.conf
    assert conf.accept_content == ["json"]
    assert conf.task_serializer == "json"
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == settings.visibility_timeout_seconds
    # A dead worker's unacked tasks are swept back on every tick, not on kombu's default every 10th.
    assert conf.broker_transport_options["unacked_restore_throttle"] == 1
    assert conf.task_routes["process_asset"]["queue"] == settings.process_queue
    assert conf.task_routes["trigger_addon"]["queue"] == settings.trigger_queue
    exchanges = {q.name: (q.exchange.name, q.routing_key) for q in conf.task_queues}
    assert exchanges[settings.process_queue] != exchanges[settings.trigger_queue]


def test_a_pickle_message_is_refused_by_the_consumer(settings: Settings) -> None:
    from kombu.exceptions import ContentDisallowed
    from kombu.serialization import loads

    app = make_celery("t", settings)
    payload = pickle.dumps(([{"asset_id": ASSET_ID}], {}, {}))
    with pytest.raises(ContentDisallowed):
        loads(payload, "application/x-python-serialize", "binary", accept=app.conf.accept_content)
