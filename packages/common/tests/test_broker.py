"""The broker transport on a real Redis: reliable fetch and recovery; an item that is no message is dropped."""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

import pytest
import redis
from kombu import Exchange, Queue

from asset_post_process.common.broker import (
    DEFAULT_INFLIGHT_GRACE_SECONDS,
    INFLIGHT_INDEX_KEY,
    Transport,
    inflight_list,
    inflight_queue,
)
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


# -- reliable fetch: BLMOVE into a per-channel in-flight list, returned when its owner dies or closes -----------


def _queue_of(name: str) -> Queue:
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def _publish(app: Any, name: str, body: Any) -> None:
    queue = _queue_of(name)
    with app.connection_for_write() as out:
        out.Producer().publish(body, exchange=queue.exchange, routing_key=name, serializer="json", declare=[queue])


def _drain_until(conn: Any, done: Any, rounds: int = 40) -> None:
    for _ in range(rounds):  # bounded: rounds x 0.25 s
        with contextlib.suppress(TimeoutError):
            conn.drain_events(timeout=0.25)
        if done():
            return


def _inflight_lists(client: redis.Redis[bytes], queue: str) -> list[str]:
    """The registered in-flight lists of ``queue``."""
    names = [raw.decode() for raw in client.zrange(INFLIGHT_INDEX_KEY, 0, -1)]
    return [name for name in names if inflight_queue(name) == queue]


def _unacked_for(client: redis.Redis[bytes], queue: str) -> list[bytes]:
    return [v for v in client.hvals("unacked") if f'"{queue}"'.encode() in v]


def test_a_consumed_and_acked_message_leaves_no_in_flight_item_and_no_unacked_entry(
    settings: Settings, redis_client: redis.Redis[bytes]
) -> None:
    app = make_celery("t", settings)
    name = settings.process_queue
    received: list[Any] = []
    seen_while_delivered: list[tuple[int, int]] = []

    def on_message(body: Any, message: Any) -> None:
        # Here the message is recorded unacked and already out of the in-flight list (one MULTI/EXEC).
        lists = _inflight_lists(redis_client, name)
        seen_while_delivered.append((sum(redis_client.llen(n) for n in lists), len(_unacked_for(redis_client, name))))
        received.append(body)
        message.ack()

    with app.connection_for_read() as conn, conn.Consumer(_queue_of(name), callbacks=[on_message], accept=["json"]):
        _publish(app, name, {"n": 1})
        _publish(app, name, {"n": 2})
        _drain_until(conn, lambda: len(received) == 2)
        lists = _inflight_lists(redis_client, name)
        assert len(lists) == 1  # this channel's, registered while it consumes
        assert redis_client.llen(lists[0]) == 0
    assert received == [{"n": 1}, {"n": 2}]
    assert seen_while_delivered == [(0, 1), (0, 1)]
    assert _unacked_for(redis_client, name) == []
    assert redis_client.llen(name) == 0
    assert _inflight_lists(redis_client, name) == []  # a clean close unregisters it


def test_a_message_fetched_by_a_worker_that_died_is_returned_by_the_sweep_after_the_grace_period(
    settings: Settings, redis_client: redis.Redis[bytes]
) -> None:
    app = make_celery("t", settings)
    name = settings.process_queue
    _publish(app, name, {"crashed": 1})
    # A worker that BLMOVEd the message into its list and was SIGKILLed before reading the reply: last seen
    # long before the grace period (the dead one), and one seen just now (alive: left alone).
    dead = inflight_list(name, "dead-worker")
    alive = inflight_list(name, "live-worker")
    assert redis_client.lmove(name, dead, "RIGHT", "LEFT") is not None
    redis_client.zadd(INFLIGHT_INDEX_KEY, {dead: time.time() - DEFAULT_INFLIGHT_GRACE_SECONDS - 60})
    redis_client.lpush(alive, b"held by a live worker")
    redis_client.zadd(INFLIGHT_INDEX_KEY, {alive: time.time() + 3600})
    received: list[Any] = []

    def on_message(body: Any, message: Any) -> None:
        received.append(body)
        message.ack()

    try:
        with app.connection_for_read() as conn, conn.Consumer(_queue_of(name), callbacks=[on_message], accept=["json"]):
            # Each empty poll runs kombu's restore sweep, and ours with it.
            _drain_until(conn, lambda: bool(received))
        assert received == [{"crashed": 1}]
        assert redis_client.exists(dead) == 0
        assert redis_client.zscore(INFLIGHT_INDEX_KEY, dead) is None
        assert redis_client.lrange(alive, 0, -1) == [b"held by a live worker"]
        assert redis_client.zscore(INFLIGHT_INDEX_KEY, alive) is not None
    finally:
        redis_client.delete(alive)
        redis_client.zrem(INFLIGHT_INDEX_KEY, alive)


def test_a_clean_close_returns_what_is_left_in_the_channels_list(
    settings: Settings, redis_client: redis.Redis[bytes]
) -> None:
    app = make_celery("t", settings)
    name = settings.process_queue
    received: list[Any] = []

    def on_message(body: Any, message: Any) -> None:
        received.append(body)
        message.ack()

    with app.connection_for_read() as conn, conn.Consumer(_queue_of(name), callbacks=[on_message], accept=["json"]):
        _publish(app, name, {"first": 1})
        _drain_until(conn, lambda: bool(received))
        (own,) = _inflight_lists(redis_client, name)
        # A fetch whose reply was lost (its connection dropped): the item sits in this channel's list.
        _publish(app, name, {"left": 1})
        assert redis_client.lmove(name, own, "RIGHT", "LEFT") is not None
    assert received == [{"first": 1}]
    assert redis_client.exists(own) == 0
    assert _inflight_lists(redis_client, name) == []
    assert redis_client.llen(name) == 1

    with app.connection_for_read() as conn, conn.Consumer(_queue_of(name), callbacks=[on_message], accept=["json"]):
        _drain_until(conn, lambda: len(received) == 2)
    assert received == [{"first": 1}, {"left": 1}]


def test_junk_fetched_into_the_in_flight_list_is_dropped_from_it(
    settings: Settings, redis_client: redis.Redis[bytes]
) -> None:
    app = make_celery("t", settings)
    name = settings.process_queue
    received: list[Any] = []

    def on_message(body: Any, message: Any) -> None:
        received.append(body)
        message.ack()

    with app.connection_for_read() as conn, conn.Consumer(_queue_of(name), callbacks=[on_message], accept=["json"]):
        redis_client.lpush(name, b"{not json", b'{"no": "envelope"}')
        _publish(app, name, {"ok": 1})
        _drain_until(conn, lambda: bool(received))
        lists = _inflight_lists(redis_client, name)
        assert len(lists) == 1
        assert redis_client.llen(lists[0]) == 0
    assert received == [{"ok": 1}]
    assert redis_client.llen(name) == 0


def test_a_channel_consuming_two_queues_falls_back_to_brpop(
    settings: Settings, redis_client: redis.Redis[bytes]
) -> None:
    app = make_celery("t", settings)
    first, second = settings.process_queue, f"{settings.process_queue}-second"
    received: list[Any] = []

    def on_message(body: Any, message: Any) -> None:
        received.append(body)
        message.ack()

    with (
        app.connection_for_read() as conn,
        conn.Consumer([_queue_of(first), _queue_of(second)], callbacks=[on_message], accept=["json"]),
    ):
        _publish(app, first, {"q": 1})
        _publish(app, second, {"q": 2})
        _drain_until(conn, lambda: len(received) == 2)
        assert _inflight_lists(redis_client, first) == []
        assert _inflight_lists(redis_client, second) == []
    assert sorted(r["q"] for r in received) == [1, 2]
    assert _unacked_for(redis_client, first) == []


def test_every_message_goes_to_the_base_list_whatever_its_priority(
    settings: Settings, redis_client: redis.Redis[bytes]
) -> None:
    app = make_celery("t", settings)
    name = settings.process_queue
    queue = _queue_of(name)
    with app.connection_for_write() as out:
        out.Producer().publish(
            {"p": 9}, exchange=queue.exchange, routing_key=name, serializer="json", priority=9, declare=[queue]
        )
    assert redis_client.llen(name) == 1
    assert redis_client.keys(f"{name}\x06\x16*") == []
    redis_client.delete(name)


def test_in_flight_list_names_do_not_collide_with_kombu_priority_lists() -> None:
    assert inflight_queue(inflight_list("q", "abc")) == "q"
    assert inflight_queue("q\x06\x169") is None
    assert inflight_queue("q") is None


def test_a_lost_connection_leaves_unacked_messages_to_the_visibility_sweep_instead_of_crashing(
    settings: Settings, redis_client: redis.Redis[bytes]
) -> None:
    # Celery collects a lost connection (the transport's client becomes None) before it closes the channel;
    # kombu's restore on close then raised AttributeError and the worker exited.
    app = make_celery("t", settings)
    name = settings.process_queue
    received: list[Any] = []

    def on_message(body: Any, message: Any) -> None:
        received.append(body)  # delivered, never acknowledged

    with app.connection_for_read() as conn, conn.Consumer(_queue_of(name), callbacks=[on_message], accept=["json"]):
        _publish(app, name, {"n": 1})
        _drain_until(conn, lambda: len(received) == 1)
        channel = conn.default_channel
        client, conn.transport.client = conn.transport.client, None  # what Celery's connection.collect() leaves
        try:
            channel.qos.restore_unacked_once()  # raised AttributeError('... hostname') before
        finally:
            conn.transport.client = client
        assert not channel.qos._delivered
    assert received == [{"n": 1}]
    assert len(_unacked_for(redis_client, name)) == 1  # still recorded: the visibility sweep returns it
    assert redis_client.llen(name) == 0


def test_an_ack_or_reject_on_a_lost_connection_leaves_the_message_to_the_visibility_sweep(
    settings: Settings, redis_client: redis.Redis[bytes]
) -> None:
    # A task that ends after its connection was collected acks or rejects on the old channel.
    app = make_celery("t", settings)
    name = settings.process_queue
    messages: list[Any] = []

    with (
        app.connection_for_read() as conn,
        conn.Consumer(_queue_of(name), callbacks=[lambda _body, message: messages.append(message)], accept=["json"]),
    ):
        _publish(app, name, {"n": 1})
        _publish(app, name, {"n": 2})
        _drain_until(conn, lambda: len(messages) == 2)
        channel = conn.default_channel
        # What a lost connection leaves: the transport's client collected, the channel's pools disconnected.
        channel._disconnect_pools()
        client, conn.transport.client = conn.transport.client, None
        try:
            messages[0].ack()  # raised AttributeError('... client') before
            messages[1].reject(requeue=True)
        finally:
            conn.transport.client = client
    assert len(_unacked_for(redis_client, name)) == 2  # both still recorded: the visibility sweep returns them
    assert redis_client.llen(name) == 0
