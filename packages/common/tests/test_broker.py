"""The broker transport on a real Redis: an item in a queue that is no kombu message is dropped, not fatal."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pytest
import redis
from kombu import Exchange, Queue

from asset_post_process.common.broker import Transport
from asset_post_process.common.celeryapp import make_celery
from asset_post_process.common.settings import Settings, load_settings


@pytest.fixture
def settings(redis_url: str, fernet_key: str) -> Settings:
    return load_settings(
        redis_url=redis_url, apikey_keys=fernet_key, process_queue=f"test-broker-{uuid.uuid4().hex[:8]}"
    )


def test_the_celery_app_uses_the_tolerant_transport(settings: Settings) -> None:
    with make_celery("t", settings).connection_for_read() as conn:
        assert isinstance(conn.transport, Transport)
        # The URL still says where Redis is: host, port and database come from it.
        assert f"{conn.hostname}:{conn.port}/{conn.virtual_host}" in settings.effective_broker_url


def test_items_that_are_no_kombu_message_are_dropped_and_the_next_message_arrives(
    settings: Settings, redis_client: redis.Redis[bytes]
) -> None:
    app = make_celery("t", settings)
    name = settings.process_queue
    queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
    received: list[Any] = []

    def on_message(body: Any, message: Any) -> None:
        received.append(body)
        message.ack()

    with app.connection_for_read() as conn, conn.Consumer(queue, callbacks=[on_message], accept=["json"]):
        # BRPOP takes from the right: the junk (pushed first) is read before the real message.
        redis_client.lpush(name, b"\xff\xfe\x00 not JSON", b"{not json", b'["a JSON list"]', b'{"no": "envelope"}')
        with app.connection_for_write() as out:
            out.Producer().publish({"ok": 1}, exchange=queue.exchange, routing_key=name, serializer="json")
        for _ in range(40):  # bounded: 40 x 0.25 s
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=0.25)
            if received:
                break
    assert received == [{"ok": 1}]
    assert redis_client.llen(name) == 0
