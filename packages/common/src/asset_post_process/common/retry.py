"""Retry delays: exponential backoff with full jitter, never shorter than the server's ``Retry-After``."""

from __future__ import annotations

import random


def backoff_seconds(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """How long to wait before retry number ``attempt`` (0 for the first retry).

    Full jitter (a uniform draw up to ``base * 2**attempt``, capped at ``cap``) spreads retries of many
    jobs that failed together; a ``Retry-After`` from the server is a floor (itself capped at ``cap``).
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    ceiling = min(cap, base * (2 ** min(attempt, 32)))
    draw = (rng or random).uniform(base / 2, ceiling) if ceiling > base / 2 else ceiling
    floor = min(cap, retry_after) if retry_after else 0.0
    return max(draw, floor)
