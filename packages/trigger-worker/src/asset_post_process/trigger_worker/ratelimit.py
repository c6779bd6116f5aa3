"""A per-addon rate limit shared by every trigger worker through Redis (GCRA, one Lua script).

Each addon has a "theoretical arrival time" (TAT) at ``Keys.rate_limit(addon)``; a call is spaced
``1 / rate`` seconds after the previous one (with a burst of ``burst`` calls). A caller whose slot is at
most ``max_wait_seconds`` away reserves it and sleeps until then; a caller further out reserves nothing
and is told how long to wait, so its job can be rescheduled instead of holding a worker thread.
The server's clock (``TIME``) is used, so workers on different hosts agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from asset_post_process.common.keys import Keys

#: The GCRA step as a Lua function (shared with the job gate, ``gate.py``): ``{1, wait}`` reserved, ``{0, wait}`` not.
LUA_FUNCTIONS = """
local function rate_acquire(key, now, interval, tau, max_wait)
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local wait = tat - tau - now
  if wait < 0 then wait = 0 end
  if wait > max_wait then
    return {0, tostring(wait)}
  end
  local new_tat = tat + interval
  redis.call('SET', key, tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
  return {1, tostring(wait)}
end
"""

_SCRIPT = (
    LUA_FUNCTIONS
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
return rate_acquire(KEYS[1], now, tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
"""
)


@dataclass(frozen=True)
class Permit:
    """``granted``: the slot is reserved, call after ``wait_seconds``; else retry in ``wait_seconds``."""

    granted: bool
    wait_seconds: float


class RateLimiter:
    """At most ``rate_per_second`` calls per addon across the cluster (plus a burst of ``burst``)."""

    def __init__(
        self,
        client: redis.Redis[bytes],
        keys: Keys,
        *,
        rate_per_second: float,
        burst: int = 1,
        max_wait_seconds: float = 1.0,
    ) -> None:
        if rate_per_second <= 0 or burst < 1 or max_wait_seconds < 0:
            raise ValueError("rate_per_second > 0, burst >= 1 and max_wait_seconds >= 0 are required")
        interval = 1.0 / rate_per_second
        self._keys = keys
        self._args = (interval, interval * (burst - 1), max_wait_seconds)
        self._script = client.register_script(_SCRIPT)

    @property
    def lua_args(self) -> tuple[float, float, float]:
        """``interval, tau, max_wait_seconds`` as the scripts take them."""
        return self._args

    def acquire(self, addon: str) -> Permit:
        """Reserve the next call slot of ``addon`` if it is near enough (see the module docstring)."""
        granted, wait = self._script(keys=[self._keys.rate_limit(addon)], args=list(self._args))
        return Permit(bool(granted), max(0.0, float(wait)))
