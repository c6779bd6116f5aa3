"""Cluster-wide figures read from Redis: queue depths, delayed retries, dead letters, live workers, addon metrics.

One :class:`FigureQuery` queues the Redis commands and parses their replies; :func:`read_figures` runs it on a
sync client (the CLI) and :func:`aread_figures` on an asyncio client (the health API), so both read exactly the
same keys the same way. Every figure comes from Redis, so every reader reports the same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import redis
import redis.asyncio as aredis

from asset_post_process.common.heartbeat import WORKER_KINDS
from asset_post_process.common.keys import Keys
from asset_post_process.common.metrics import LatencyHistogram, parse_latency, parse_outcomes

#: kombu's Redis transport keeps a queue as a list named after it, plus one list per priority step.
KOMBU_PRIORITY_SEPARATOR = "\x06\x16"
KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)
#: kombu's hash of messages delivered to a worker and not yet acknowledged (all queues).
KOMBU_UNACKED_KEY = "unacked"


def queue_lists(queue: str) -> list[str]:
    """The Redis lists that hold ``queue``'s waiting messages (one per kombu priority step)."""
    return [queue if step == 0 else f"{queue}{KOMBU_PRIORITY_SEPARATOR}{step}" for step in KOMBU_PRIORITY_STEPS]


@dataclass(frozen=True)
class Figures:
    """A snapshot of the service's state as kept in Redis."""

    queues: dict[str, int]
    unacked: int
    delayed: int
    delayed_due: int
    dead_letters: int
    workers: dict[str, list[str]]
    outcomes: dict[tuple[str, str], int]
    latency: dict[str, LatencyHistogram] = field(default_factory=dict)

    @property
    def addons(self) -> list[str]:
        """Addons with any recorded outcome or latency, sorted."""
        return sorted({addon for addon, _ in self.outcomes} | set(self.latency))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures (outcomes nested as addon -> outcome -> count)."""
        outcomes: dict[str, dict[str, int]] = {}
        for (addon, outcome), count in sorted(self.outcomes.items()):
            outcomes.setdefault(addon, {})[outcome] = count
        return {
            "queues": dict(self.queues),
            "unacked": self.unacked,
            "delayed": {"total": self.delayed, "due": self.delayed_due},
            "dead_letters": self.dead_letters,
            "workers": {kind: list(nodes) for kind, nodes in self.workers.items()},
            "outcomes": outcomes,
        }


class FigureQuery:
    """The Redis commands behind :class:`Figures`, for a sync or an asyncio pipeline alike.

    Two rounds: ``broker`` commands (queue lists) and ``store`` commands (everything the service keeps), then
    an optional ``latency`` round for the addons the first round named. Queueing a command on a redis-py
    pipeline is the same call for both clients; only ``execute()`` differs, and that is the caller's part.
    """

    def __init__(
        self,
        keys: Keys,
        queues: Sequence[str],
        heartbeat_ttl_seconds: float,
        *,
        kinds: Sequence[str] = WORKER_KINDS,
        now: float | None = None,
    ) -> None:
        self.keys = keys
        self.queues = list(queues)
        self.kinds = list(kinds)
        self.now = time.time() if now is None else now
        self.since = self.now - heartbeat_ttl_seconds

    def queue_broker(self, pipe: Any) -> None:
        """Queue depths (every priority list of every queue) and the in-flight count, on the broker."""
        for queue in self.queues:
            for name in queue_lists(queue):
                pipe.llen(name)
        pipe.hlen(KOMBU_UNACKED_KEY)

    def queue_store(self, pipe: Any) -> None:
        """Delayed retries, dead letters, live workers and outcome counters, on the cache Redis."""
        pipe.zcard(self.keys.delayed)
        pipe.zcount(self.keys.delayed, "-inf", self.now)
        pipe.zcard(self.keys.dead_letter_index)
        for kind in self.kinds:
            pipe.zrangebyscore(self.keys.heartbeats(kind), self.since, "+inf")
        pipe.hgetall(self.keys.outcome_counters)

    def parse(self, broker_replies: Sequence[Any], store_replies: Sequence[Any]) -> Figures:
        """Figures from the replies of :meth:`queue_broker` and :meth:`queue_store`, in order."""
        steps = len(KOMBU_PRIORITY_STEPS)
        queues = {
            queue: sum(int(n) for n in broker_replies[i * steps : (i + 1) * steps])
            for i, queue in enumerate(self.queues)
        }
        unacked = int(broker_replies[len(self.queues) * steps])
        delayed, delayed_due, dead_letters = (int(v) for v in store_replies[:3])
        node_lists = store_replies[3 : 3 + len(self.kinds)]
        workers = {
            kind: sorted(_text(node) for node in nodes) for kind, nodes in zip(self.kinds, node_lists, strict=True)
        }
        outcomes = parse_outcomes(store_replies[3 + len(self.kinds)])
        return Figures(queues, unacked, delayed, delayed_due, dead_letters, workers, outcomes)

    def queue_latency(self, pipe: Any, addons: Iterable[str]) -> None:
        """The latency histogram hash of each of ``addons``."""
        for addon in addons:
            pipe.hgetall(self.keys.latency(addon))

    @staticmethod
    def parse_latency(addons: Sequence[str], replies: Sequence[Mapping[bytes, bytes]]) -> dict[str, LatencyHistogram]:
        """addon -> histogram, from the replies of :meth:`queue_latency`; addons never timed are left out."""
        return {addon: parse_latency(raw) for addon, raw in zip(addons, replies, strict=True) if raw}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def read_figures(
    store: redis.Redis[bytes],
    keys: Keys,
    queues: Sequence[str],
    heartbeat_ttl_seconds: float,
    *,
    broker: redis.Redis[bytes] | None = None,
    addons: Iterable[str] = (),
    with_latency: bool = True,
) -> Figures:
    """The figures, read with sync clients (``broker`` defaults to ``store``: one Redis for both)."""
    query = FigureQuery(keys, queues, heartbeat_ttl_seconds)
    broker_pipe = (broker or store).pipeline(transaction=False)
    query.queue_broker(broker_pipe)
    store_pipe = store.pipeline(transaction=False)
    query.queue_store(store_pipe)
    figures = query.parse(broker_pipe.execute(), store_pipe.execute())
    if not with_latency:
        return figures
    names = sorted({addon for addon, _ in figures.outcomes} | set(addons))
    latency_pipe = store.pipeline(transaction=False)
    query.queue_latency(latency_pipe, names)
    return replace(figures, latency=query.parse_latency(names, latency_pipe.execute()))


async def aread_figures(
    store: aredis.Redis[bytes],
    keys: Keys,
    queues: Sequence[str],
    heartbeat_ttl_seconds: float,
    *,
    broker: aredis.Redis[bytes] | None = None,
    addons: Iterable[str] = (),
    with_latency: bool = True,
) -> Figures:
    """The figures, read with asyncio clients; same commands and parsing as :func:`read_figures`."""
    query = FigureQuery(keys, queues, heartbeat_ttl_seconds)
    broker_pipe = (broker or store).pipeline(transaction=False)
    query.queue_broker(broker_pipe)
    store_pipe = store.pipeline(transaction=False)
    query.queue_store(store_pipe)
    figures = query.parse(await broker_pipe.execute(), await store_pipe.execute())
    if not with_latency:
        return figures
    names = sorted({addon for addon, _ in figures.outcomes} | set(addons))
    latency_pipe = store.pipeline(transaction=False)
    query.queue_latency(latency_pipe, names)
    return replace(figures, latency=query.parse_latency(names, await latency_pipe.execute()))
