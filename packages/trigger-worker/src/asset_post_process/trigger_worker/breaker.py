"""A per-addon circuit breaker shared by every trigger worker through Redis.

State lives in one hash per addon (``Keys.breaker(addon)``) and every transition is one Lua script, timed
by the Redis server's clock (``TIME``) so workers with skewed clocks agree:

- **closed**: calls go through; each transient failure adds to ``failures``, any answer from the addon
  resets it; ``threshold`` consecutive failures open the breaker;
- **open** for ``open_seconds``: no call goes through; the caller reschedules its job for when the
  breaker may half-open, without spending a retry;
- **half-open**: the first caller gets the single probe (a lease of ``probe_lease_seconds``, so a probe
  whose worker died is replaced); everyone else waits. The probe's success closes the breaker, its
  failure opens it again for ``open_seconds``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis

from asset_post_process.common.keys import Keys

#: Lua helpers shared with the job gate (``gate.py``): the server's clock, and admission (``acquire``/``peek``).
LUA_FUNCTIONS = """
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function breaker_admit(key, op, now, lease, ttl)
  local state = redis.call('HGET', key, 'state') or 'closed'
  if state == 'closed' then
    return {'allow', '0'}
  end
  if state == 'open' then
    local open_until = tonumber(redis.call('HGET', key, 'open_until') or '0')
    if now < open_until then
      return {'open', tostring(open_until - now)}
    end
  else
    local probe_until = tonumber(redis.call('HGET', key, 'probe_until') or '0')
    if now < probe_until then
      return {'half_open', tostring(probe_until - now)}
    end
  end
  if op == 'peek' then
    return {'allow', '0'}
  end
  redis.call('HSET', key, 'state', 'half_open', 'probe_until', tostring(now + lease))
  redis.call('EXPIRE', key, ttl)
  return {'probe', '0'}
end
"""

_SCRIPT = (
    LUA_FUNCTIONS
    + """
local key = KEYS[1]
local op = ARGV[1]
local threshold = tonumber(ARGV[2])
local open_seconds = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local now = server_now()

local function open_it()
  redis.call('HSET', key, 'state', 'open', 'open_until', tostring(now + open_seconds), 'failures', threshold)
  redis.call('HDEL', key, 'probe_until')
  redis.call('EXPIRE', key, ttl)
  return {'open', tostring(open_seconds)}
end

if op == 'acquire' or op == 'peek' then
  return breaker_admit(key, op, now, lease, ttl)
elseif op == 'success' then
  redis.call('DEL', key)
  return {'closed', '0'}
elseif op == 'failure' then
  local state = redis.call('HGET', key, 'state') or 'closed'
  if state == 'half_open' then
    return open_it()
  elseif state == 'closed' then
    local failures = redis.call('HINCRBY', key, 'failures', 1)
    redis.call('EXPIRE', key, ttl)
    if failures >= threshold then
      return open_it()
    end
    return {'closed', '0'}
  end
  return {state, '0'}
end
return redis.error_reply('unknown breaker op ' .. tostring(op))
"""
)


class Gate(StrEnum):
    """What :meth:`CircuitBreaker.acquire` answers."""

    ALLOW = "allow"  # closed: call
    PROBE = "probe"  # half-open and this caller holds the probe: call
    OPEN = "open"  # open: wait until it may half-open
    HALF_OPEN = "half_open"  # another caller holds the probe: wait


@dataclass(frozen=True)
class Admission:
    """Whether a call may go out now, and if not, how long until the breaker's state may change."""

    gate: Gate
    wait_seconds: float = 0.0

    @property
    def allowed(self) -> bool:
        """Whether the caller may call the addon now."""
        return self.gate in (Gate.ALLOW, Gate.PROBE)


class CircuitBreaker:
    """Per-addon breakers in Redis; cheap to share between threads."""

    def __init__(
        self,
        client: redis.Redis[bytes],
        keys: Keys,
        *,
        threshold: int,
        open_seconds: float,
        probe_lease_seconds: float,
        ttl_seconds: int = 24 * 3600,
    ) -> None:
        if threshold < 1 or open_seconds <= 0 or probe_lease_seconds <= 0:
            raise ValueError("threshold >= 1, open_seconds > 0 and probe_lease_seconds > 0 are required")
        self._keys = keys
        self._args = (threshold, open_seconds, probe_lease_seconds, max(ttl_seconds, int(open_seconds) + 60))
        self._script = client.register_script(_SCRIPT)
        self._redis = client

    @property
    def lua_args(self) -> tuple[int, float, float, int]:
        """``threshold, open_seconds, probe_lease_seconds, ttl_seconds`` as the scripts take them."""
        return self._args

    def _run(self, op: str, addon: str) -> tuple[str, float]:
        state, seconds = self._script(keys=[self._keys.breaker(addon)], args=[op, *self._args])
        return state.decode(), float(seconds)

    def acquire(self, addon: str) -> Admission:
        """May a call to ``addon`` go out now?"""
        gate, wait = self._run("acquire", addon)
        return Admission(Gate(gate), wait)

    def peek(self, addon: str) -> Admission:
        """Would :meth:`acquire` let a call through now? Changes nothing (a free probe reads as ``ALLOW``)."""
        gate, wait = self._run("peek", addon)
        return Admission(Gate(gate), wait)

    def record_success(self, addon: str) -> None:
        """The addon answered (anything but a transient failure): close the breaker."""
        self._run("success", addon)

    def queue_success(self, pipe: redis.client.Pipeline[Any], addon: str) -> None:
        """:meth:`record_success` as a command queued on ``pipe`` (its script op is one unconditional ``DEL``)."""
        pipe.delete(self._keys.breaker(addon))

    def record_failure(self, addon: str) -> bool:
        """A transient failure of ``addon``; returns whether the breaker is (now) open."""
        state, _ = self._run("failure", addon)
        return state == "open"

    def state(self, addon: str) -> str:
        """``closed``, ``open`` or ``half_open`` (as stored; an expired open is still ``open`` until acquired)."""
        raw = self._redis.hget(self._keys.breaker(addon), "state")
        return "closed" if raw is None else raw.decode()
