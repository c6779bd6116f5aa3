"""The broker transport: kombu's Redis transport with a reliable fetch, and junk in a queue dropped, not fatal.

**Reliable fetch.** kombu pops a queue with BRPOP and records the message in its ``unacked`` hash only after the
reply is read, so a worker SIGKILLed (or a Redis that went away) in between lost the message. A channel that
consumes exactly one queue (our workers run with ``-Q <queue>``) fetches with
``BLMOVE <queue> <in-flight list> RIGHT LEFT`` instead: the message moves atomically into a list private to the
channel (``<queue>\\x06\\x16inflight\\x06\\x16<channel id>``), and is removed from it in the same MULTI/EXEC that
records it in ``unacked`` (:meth:`QoS.append`). At every instant the message is in the queue, in an in-flight
list, or in ``unacked``; never nowhere.

- Every in-flight list is registered in the sorted set :data:`INFLIGHT_INDEX_KEY` (score: when its owner was
  last seen alive). The owner refreshes it when it fetches and on kombu's restore timer, at most every
  :data:`INFLIGHT_REFRESH_SECONDS`.
- Each worker sweeps, on the timer where kombu restores unacknowledged messages (``QoS.restore_visible``), the
  lists whose owner was not seen for ``inflight_grace_seconds`` (transport option, default
  :data:`DEFAULT_INFLIGHT_GRACE_SECONDS`): their items go back to their queue and the registration is removed,
  atomically (one Lua script per list).
- A channel returns what it left in its own list (a reply lost with its connection) before its next fetch, and
  everything on a clean close. A message that was both in a list and in ``unacked`` (ambiguous write) can be
  delivered twice; the dedup and done marks of the workers absorb that. None is lost.
- Fallback to kombu's BRPOP (with its loss window): a channel consuming more than one queue, a
  ``global_keyprefix``, or a Redis older than 6.2 (no BLMOVE).
- Priorities: BLMOVE reads one list, so this transport uses ``priority_steps=[0]``: every message sent through
  it lands in the queue's base list. A message sent with a priority by a producer on kombu's default transport
  lands in ``<queue>\\x06\\x16<3|6|9>``, which our workers do not read; ``common.figures`` counts those lists in
  the queue depth, so it shows. Nothing of ours sets a priority.

**Junk.** An item in a queue that is no kombu message (bytes that are not JSON, JSON that is not an envelope: a
broken producer, a manual LPUSH) raised out of kombu's event loop, and Celery stopped the worker with
"Unrecoverable error". This channel logs and drops it instead.

Keys hold no secret (messages carry only encrypted API keys). The liveness scores use the workers' clocks, as
kombu's own ``unacked_index`` does.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from queue import Empty
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

log = logging.getLogger(__name__)

#: What decoding an item that no kombu producer wrote raises (``JSONDecodeError`` and ``UnicodeDecodeError``
#: are ``ValueError``s; a JSON value that is no envelope gives ``KeyError``/``TypeError``/``AttributeError``).
NOT_A_MESSAGE = (ValueError, KeyError, TypeError, AttributeError)

#: The value of ``broker_transport`` that selects this transport (the URL stays ``redis://``).
TRANSPORT = "asset_post_process.common.broker:Transport"

#: Sorted set of every in-flight list; score: the time (epoch seconds) its owner was last seen alive.
INFLIGHT_INDEX_KEY = "unacked_inflight_index"
#: The word between the queue name and the owner in an in-flight list's name (no kombu priority is a word).
INFLIGHT_MARK = "inflight"
#: An owner refreshes its registration at most this often (seconds).
INFLIGHT_REFRESH_SECONDS = 5.0
#: A worker sweeps dead owners' lists at most this often (seconds).
INFLIGHT_SWEEP_SECONDS = 5.0
#: An owner not seen for this long is dead: its list goes back to the queue (transport option
#: ``inflight_grace_seconds``). Far above the refresh period and a fetch's blocking time.
DEFAULT_INFLIGHT_GRACE_SECONDS = 30.0
#: At most this many dead lists per sweep (the rest on the next one).
INFLIGHT_SWEEP_LIMIT = 100
#: BLMOVE and LMOVE exist from Redis 6.2.
MIN_REDIS_VERSION = (6, 2)

#: KEYS: index, in-flight list, queue. ARGV[1]: a score; an owner seen after it is alive and its list is left
#: alone ("" = return regardless). ARGV[2]: "1" to remove the registration. Returns the items moved, -1 if alive.
_RETURN_SCRIPT = """
local ceil = tonumber(ARGV[1])
if ceil then
  local score = redis.call('ZSCORE', KEYS[1], KEYS[2])
  if score and tonumber(score) > ceil then return -1 end
end
local moved = 0
for _ = 1, redis.call('LLEN', KEYS[2]) do
  if redis.call('LMOVE', KEYS[2], KEYS[3], 'LEFT', 'RIGHT') then moved = moved + 1 end
end
if ARGV[2] == '1' then redis.call('ZREM', KEYS[1], KEYS[2]) end
return moved
"""


def inflight_list(queue: str, owner: str, sep: str = kombu_redis.Channel.sep) -> str:
    """The name of ``owner``'s in-flight list for ``queue``."""
    return f"{queue}{sep}{INFLIGHT_MARK}{sep}{owner}"


def inflight_queue(name: str, sep: str = kombu_redis.Channel.sep) -> str | None:
    """The queue an in-flight list belongs to, or None if ``name`` is no in-flight list."""
    queue, found, owner = name.rpartition(f"{sep}{INFLIGHT_MARK}{sep}")
    return queue if found and queue and owner else None


def return_inflight(client: Any, name: str, queue: str, *, dead_before: float | None, unregister: bool) -> int:
    """Move the items of in-flight list ``name`` back to ``queue`` (oldest fetched is consumed first).

    With ``dead_before``, only if its owner was last seen before it. Returns the items moved, -1 if alive.
    """
    ceil = "" if dead_before is None else repr(dead_before)
    return int(client.eval(_RETURN_SCRIPT, 3, INFLIGHT_INDEX_KEY, name, queue, ceil, "1" if unregister else "0"))


def _log_dropped(exc: BaseException) -> None:
    log.error(
        "dropped an item of the queue that is not a kombu message (%s)",
        type(exc).__name__,
        extra={"reason_code": "not_a_message"},
    )


class QoS(kombu_redis.QoS):  # type: ignore[misc]
    """kombu's ack emulation; a fetched message leaves its in-flight list in the write that records it unacked."""

    def append(self, message: Any, delivery_tag: str) -> None:
        fetched = self.channel._fetched
        if fetched is None:
            super().append(message, delivery_tag)
            return
        name, item = fetched
        delivery = message.delivery_info
        record = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        with self.pipe_or_acquire() as pipe:  # MULTI/EXEC: recorded and out of the list, or neither
            pipe.zadd(self.unacked_index_key, {delivery_tag: time.time()}).hset(
                self.unacked_key, delivery_tag, record
            ).lrem(name, 1, item).execute()
        self.channel._fetched = None
        virtual.QoS.append(self, message, delivery_tag)

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        super().restore_visible(start=start, num=num, interval=interval)
        self.channel.sweep_inflight()

    def _connection_gone(self) -> bool:
        """Whether this channel's broker connection was already collected (Celery does so when it loses Redis).

        kombu then builds a new pool from ``channel.connection.client``, which is ``None``, and raises
        ``AttributeError`` ('hostname', 'client'); Celery calls that "Unrecoverable error" and the worker exits
        (Celery/kombu 5.7, seen in the reliability suite's Redis restarts: on closing the old channel, and on a
        task's ack or reject that lands on it). Every such message is still recorded in ``unacked`` in Redis,
        so the visibility-timeout sweep brings it back; the channel only forgets it, and the worker reconnects.
        """
        transport = getattr(self.channel, "connection", None)
        return transport is None or getattr(transport, "client", None) is None

    @staticmethod
    def _left_to_sweep(what: str, count: int) -> None:
        if count:
            log.warning(
                "broker connection lost: %s of %d message(s) left to the visibility timeout, which returns them",
                what,
                count,
            )

    def restore_unacked(self, client: Any = None) -> Any:
        """kombu's, unless the connection is gone (see :meth:`_connection_gone`)."""
        if not self._connection_gone():
            return super().restore_unacked(client)
        count = len(self._delivered)
        self._delivered.clear()
        self._dirty.clear()
        self._left_to_sweep("restore", count)
        return None

    def ack(self, delivery_tag: str) -> None:
        """kombu's, unless the connection is gone: then the message is redelivered later (at least once)."""
        if not self._connection_gone():
            super().ack(delivery_tag)
            return
        virtual.QoS.ack(self, delivery_tag)  # forgotten here; Redis still holds it as unacked
        self._left_to_sweep("ack", 1)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        """kombu's, unless the connection is gone: then the message comes back after the visibility timeout."""
        if not self._connection_gone():
            super().reject(delivery_tag, requeue=requeue)
            return
        virtual.QoS.ack(self, delivery_tag)  # forgotten here; Redis still holds it as unacked
        self._left_to_sweep("reject", 1)


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    """A Redis channel with a reliable fetch for one queue, that survives a queue item that is not a message."""

    QoS = QoS
    priority_steps = [0]  # noqa: RUF012 (kombu's class attribute)
    inflight_grace_seconds = DEFAULT_INFLIGHT_GRACE_SECONDS
    from_transport_options = (*kombu_redis.Channel.from_transport_options, "inflight_grace_seconds")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._owner = uuid.uuid4().hex
        #: This channel's in-flight lists (name -> queue).
        self._inflight: dict[str, str] = {}
        #: The in-flight list of the BLMOVE sent and not yet answered.
        self._blmove: str | None = None
        #: The item being delivered (list, raw item) until QoS.append records it.
        self._fetched: tuple[str, bytes] | None = None
        self._inflight_dirty = False
        self._refreshed_at = float("-inf")
        self._swept_at = float("-inf")
        self._blmove_supported: bool | None = None
        super().__init__(*args, **kwargs)

    # -- fetching ---------------------------------------------------------------------------------------------

    def _reliable_queue(self) -> str | None:
        queues = self.active_queues
        if len(queues) != 1 or self.global_keyprefix or not self._supports_blmove():
            return None
        return str(queues[0])

    def _supports_blmove(self) -> bool:
        if self._blmove_supported is None:
            with self.conn_or_acquire() as client:
                version = str(client.info("server").get("redis_version", "0"))
            parts = [int(p) if p.isdigit() else 0 for p in version.split(".")[:2]]
            self._blmove_supported = tuple(parts) >= MIN_REDIS_VERSION
            if not self._blmove_supported:
                log.warning("Redis %s has no BLMOVE: consuming with BRPOP, which can lose a message", version)
        return self._blmove_supported

    def _brpop_start(self, timeout: int | None = None) -> None:
        if self._blmove is not None:
            # The last BLMOVE's reply was never read (connection lost): its item may sit in our list.
            self._inflight_dirty = True
            self._blmove = None
        queue = self._reliable_queue()
        if queue is not None and inflight_list(queue, self._owner, self.sep) not in self._inflight:
            self._inflight[inflight_list(queue, self._owner, self.sep)] = queue
            self._inflight_dirty = True  # register it before the first BLMOVE into it
        self._keep_inflight()
        if queue is None:
            super()._brpop_start(timeout)
            return
        if timeout is None:
            timeout = self.brpop_timeout
        name = inflight_list(queue, self._owner, self.sep)
        self._in_poll = self.client.connection
        self._brpop_sent_at = time.monotonic()
        self._blmove = name
        self.client.connection.send_command("BLMOVE", queue, name, "RIGHT", "LEFT", timeout or 0)

    def _keep_inflight(self) -> None:
        """Refresh our registrations and return leftovers (no BLMOVE of ours is outstanding here)."""
        if not self._inflight:
            return
        now = time.monotonic()
        if not (self._inflight_dirty or now - self._refreshed_at >= INFLIGHT_REFRESH_SECONDS):
            return
        with self.conn_or_acquire() as client:
            lengths = self._refresh(client, with_lengths=True)
            for (name, queue), length in zip(self._inflight.items(), lengths, strict=True):
                if length:
                    moved = return_inflight(client, name, queue, dead_before=None, unregister=False)
                    log.warning("returned %d unread message(s) of this worker to queue %s", moved, queue)
        self._inflight_dirty = False
        self._refreshed_at = now

    def _refresh(self, client: Any, *, with_lengths: bool = False) -> list[int]:
        stamp = time.time()
        with client.pipeline(transaction=False) as pipe:
            for name in self._inflight:
                pipe.zadd(INFLIGHT_INDEX_KEY, {name: stamp})
                if with_lengths:
                    pipe.llen(name)
            replies = pipe.execute()
        return [int(n) for n in replies[1::2]] if with_lengths else []

    def _brpop_read(self, **options: Any) -> Any:
        name = self._blmove
        if name is None:
            try:
                return super()._brpop_read(**options)
            except NOT_A_MESSAGE as exc:
                _log_dropped(exc)
                return True
        try:
            try:
                item = self.client.parse_response(self.client.connection, "BLMOVE", **options)
            except self.connection_errors:
                # Disconnect so the next iteration reconnects; the item (if any) is returned before the next fetch.
                self.client.connection.disconnect()
                raise
            self._blmove = None
            if item is None:
                raise Empty()
            self._deliver_fetched(name, self._inflight[name], item)
            return True
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()

    def _deliver_fetched(self, name: str, queue: str, item: bytes) -> None:
        try:
            payload = loads(bytes_to_str(item))
        except NOT_A_MESSAGE as exc:
            _log_dropped(exc)
            self._remove_fetched(name, item)
            return
        self._fetched = (name, item)
        try:
            self.connection._deliver(payload, queue)
        except NOT_A_MESSAGE as exc:
            unrecorded, self._fetched = self._fetched is not None, None
            _log_dropped(exc)
            if unrecorded:
                self._remove_fetched(name, item)
            return
        except BaseException:
            # Not recorded (Redis gone mid-append, ...): it stays in our list and goes back before the next fetch.
            if self._fetched is not None:
                self._inflight_dirty = True
            self._fetched = None
            raise
        if self._fetched is not None:
            # Delivered without ack emulation (a no_ack consumer, or recorded by another channel): done with it.
            self._fetched = None
            self._remove_fetched(name, item)

    def _remove_fetched(self, name: str, item: bytes) -> None:
        with self.conn_or_acquire() as client:
            client.lrem(name, 1, item)

    # -- recovery ---------------------------------------------------------------------------------------------

    def sweep_inflight(self) -> int:
        """Keep our lists registered; return dead owners' lists to their queues. Returns the items moved."""
        now = time.monotonic()
        if now - self._swept_at < INFLIGHT_SWEEP_SECONDS:
            return 0
        self._swept_at = now
        moved = 0
        with self.conn_or_acquire() as client:
            if self._inflight:
                self._refresh(client)
            dead_before = time.time() - float(self.inflight_grace_seconds)
            dead = client.zrange(
                INFLIGHT_INDEX_KEY, "-inf", dead_before, byscore=True, offset=0, num=INFLIGHT_SWEEP_LIMIT
            )
            for raw in dead:
                name = bytes_to_str(raw)
                queue = inflight_queue(name, self.sep)
                if queue is None:
                    client.zrem(INFLIGHT_INDEX_KEY, name)
                    continue
                try:
                    count = return_inflight(client, name, queue, dead_before=dead_before, unregister=True)
                except self.ResponseError:
                    log.warning("could not return in-flight list of queue %s", queue, exc_info=True)
                    continue
                if count > 0:
                    moved += count
                    log.warning("returned %d message(s) of a dead worker to queue %s", count, queue)
        return moved

    def close(self) -> None:
        if not self.closed and self._inflight:
            self._closing = True
            if self._in_poll:
                with contextlib.suppress(Empty):
                    self._brpop_read()
            try:
                with self.conn_or_acquire() as client:
                    for name, queue in self._inflight.items():
                        # Keep the registration if a BLMOVE may still be outstanding: the sweep collects its item.
                        return_inflight(client, name, queue, dead_before=None, unregister=self._blmove is None)
            except Exception:  # best effort: the sweep returns what is left after the grace period
                log.warning("could not return this channel's in-flight messages on close", exc_info=True)
        super().close()


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel
