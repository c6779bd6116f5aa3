"""Cluster-wide figures kept in Redis by the workers and read by the health API.

Per-addon outcome counters and addon call latency histograms; every API replica reads the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from asset_post_process.common.keys import Keys

#: Upper bounds (seconds) of the latency histogram buckets; +Inf is implicit.
LATENCY_BUCKETS: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

OUTCOMES = ("done", "skipped", "retried", "dead_lettered")


@dataclass
class LatencyHistogram:
    """Cumulative-bucket histogram of one addon's call latency."""

    buckets: dict[float, int] = field(default_factory=dict)
    count: int = 0
    total_seconds: float = 0.0


class Metrics:
    """Increments and reads the Redis-held counters."""

    def __init__(self, client: redis.Redis[bytes], keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    def count_outcome(self, addon: str, outcome: str, amount: int = 1) -> None:
        """Add ``amount`` to the ``outcome`` counter of ``addon``."""
        self._redis.hincrby(self._keys.outcome_counters, f"{addon}|{outcome}", amount)

    def observe_latency(self, addon: str, seconds: float) -> None:
        """Record one call of ``addon`` that took ``seconds``."""
        pipe = self._redis.pipeline(transaction=False)
        self.queue_latency(pipe, addon, seconds)
        pipe.execute()

    def queue_outcome(self, pipe: redis.client.Pipeline[Any], addon: str, outcome: str, amount: int = 1) -> None:
        """:meth:`count_outcome` as commands queued on ``pipe`` (the caller executes it, with its own commands)."""
        pipe.hincrby(self._keys.outcome_counters, f"{addon}|{outcome}", amount)

    def queue_latency(self, pipe: redis.client.Pipeline[Any], addon: str, seconds: float) -> None:
        """:meth:`observe_latency` as commands queued on ``pipe`` (the caller executes it)."""
        bucket = next((f"{b}" for b in LATENCY_BUCKETS if seconds <= b), "+Inf")
        key = self._keys.latency(addon)
        pipe.hincrby(key, bucket, 1)
        pipe.hincrby(key, "count", 1)
        pipe.hincrbyfloat(key, "sum", seconds)

    def outcomes(self) -> dict[tuple[str, str], int]:
        """(addon, outcome) -> count."""
        return parse_outcomes(self._redis.hgetall(self._keys.outcome_counters))

    def latency(self, addon: str) -> LatencyHistogram:
        """The cumulative latency histogram of ``addon``."""
        return parse_latency(self._redis.hgetall(self._keys.latency(addon)))


def parse_outcomes(raw: Mapping[bytes, bytes]) -> dict[tuple[str, str], int]:
    """(addon, outcome) -> count, from the outcome counters hash as read from Redis."""
    result: dict[tuple[str, str], int] = {}
    for name, value in raw.items():
        addon, _, outcome = name.decode().partition("|")
        result[(addon, outcome)] = int(value)
    return result


def parse_latency(raw_hash: Mapping[bytes, bytes]) -> LatencyHistogram:
    """The cumulative histogram held in one addon's latency hash as read from Redis."""
    raw = {k.decode(): v.decode() for k, v in raw_hash.items()}
    histogram = LatencyHistogram(count=int(raw.get("count", 0)), total_seconds=float(raw.get("sum", 0.0)))
    running = 0
    for bound in LATENCY_BUCKETS:
        running += int(raw.get(f"{bound}", 0))
        histogram.buckets[bound] = running
    return histogram
