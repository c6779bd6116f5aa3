"""Bounded waiting for tests and the demo: poll a condition, never loop forever."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition did not hold within the time allowed (an ``AssertionError``, so pytest reports it as one)."""


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str | Callable[[], str] | None = None,
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns a truthy value, and return that value.

    Raises :class:`WaitTimeout` after ``timeout`` seconds, with ``message`` (a string, or a callable giving one,
    e.g. the simulator's calls so far) and the predicate's last answer.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = message() if callable(message) else message
            name = getattr(predicate, "__name__", "condition")
            raise WaitTimeout(f"{detail or name} not met within {timeout}s (last value: {value!r})")
        time.sleep(interval)
