"""The health checks: Redis answers, and each worker kind has a fresh heartbeat.

One pipelined round trip on an asyncio client with short timeouts, bounded overall: cheap enough for
Docker Swarm to call every few seconds. No process is spawned and no worker is pinged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aredis
from redis.exceptions import RedisError

from asset_post_process.common.heartbeat import WORKER_KINDS
from asset_post_process.common.keys import Keys


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    ok: bool
    detail: str
    live: int | None = None


def worker_check_name(kind: str) -> str:
    """The name of the heartbeat check of ``kind`` workers."""
    return f"workers.{kind}"


async def run_checks(
    client: aredis.Redis[bytes],
    keys: Keys,
    heartbeat_ttl_seconds: float,
    *,
    kinds: Sequence[str] = WORKER_KINDS,
    timeout: float = 1.0,
) -> list[Check]:
    """Check Redis and the heartbeats of every worker kind, within ``timeout`` seconds in all."""
    since = time.time() - heartbeat_ttl_seconds
    try:
        async with asyncio.timeout(timeout):
            pipe = client.pipeline(transaction=False)
            pipe.ping()
            for kind in kinds:
                pipe.zcount(keys.heartbeats(kind), since, "+inf")
            replies = await pipe.execute()
    except (RedisError, OSError, TimeoutError) as exc:
        reason = f"Redis did not answer ({type(exc).__name__})"
        return [
            Check("redis", False, reason),
            *(Check(worker_check_name(kind), False, f"unknown: {reason}") for kind in kinds),
        ]
    checks = [Check("redis", True, "PONG")]
    for kind, live in zip(kinds, replies[1:], strict=True):
        count = int(live)
        detail = (
            f"{count} {kind} worker(s) beat within {heartbeat_ttl_seconds:g}s"
            if count
            else f"no {kind} worker heartbeat within {heartbeat_ttl_seconds:g}s"
        )
        checks.append(Check(worker_check_name(kind), count > 0, detail, count))
    return checks
