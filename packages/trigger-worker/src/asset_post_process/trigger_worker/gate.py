"""The job gate: done-mark check, breaker peek, rate-limit slot and breaker acquire in one Lua script.

One round trip answers what the handler used to ask in four (``EXISTS`` done mark, breaker ``peek``, rate limit,
breaker ``acquire``), with the same rules, in the same order, on one reading of the server's clock:

1. the job's done mark exists -> :attr:`Step.DUPLICATE` (nothing else touched);
2. the breaker would hold the call back (``peek``) -> :attr:`Step.HELD` with that admission (no slot taken);
3. the next rate-limit slot is too far -> :attr:`Step.LIMITED` with the permit (nothing reserved);
4. the slot is reserved but lies ahead -> :attr:`Step.WAIT` with the permit: the caller sleeps, then asks
   :meth:`CircuitBreaker.acquire` itself, so the breaker is asked *after* the wait, as before;
5. the slot is now -> the breaker's atomic ``acquire`` -> :attr:`Step.ADMITTED` (``allow``, or ``probe`` when the
   breaker half-opens: this job holds the one probe).

The breaker and rate-limit Lua is the very code of ``breaker.py`` and ``ratelimit.py`` (their ``LUA_FUNCTIONS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import redis

from asset_post_process.common.keys import Keys
from asset_post_process.trigger_worker import breaker as breaker_module
from asset_post_process.trigger_worker import ratelimit as ratelimit_module
from asset_post_process.trigger_worker.breaker import Admission, CircuitBreaker, Gate
from asset_post_process.trigger_worker.ratelimit import Permit, RateLimiter

_SCRIPT = (
    breaker_module.LUA_FUNCTIONS
    + ratelimit_module.LUA_FUNCTIONS
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'duplicate', '', '0'}
end
local lease = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local now = server_now()
local held = breaker_admit(KEYS[2], 'peek', now, lease, ttl)
if held[1] ~= 'allow' then
  return {'held', held[1], held[2]}
end
local permit = rate_acquire(KEYS[3], now, tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
if permit[1] == 0 then
  return {'limited', '0', permit[2]}
end
if tonumber(permit[2]) > 0 then
  return {'wait', '1', permit[2]}
end
local admission = breaker_admit(KEYS[2], 'acquire', now, lease, ttl)
return {'admitted', admission[1], admission[2]}
"""
)


class Step(StrEnum):
    """What the gate answered (see the module docstring)."""

    DUPLICATE = "duplicate"
    HELD = "held"
    LIMITED = "limited"
    WAIT = "wait"
    ADMITTED = "admitted"


@dataclass(frozen=True)
class Passage:
    """The gate's answer: ``admission`` for ``HELD``/``ADMITTED``, ``permit`` for ``LIMITED``/``WAIT``."""

    step: Step
    admission: Admission | None = None
    permit: Permit | None = None


class JobGate:
    """The admission of one job in one script, over a breaker's and a rate limiter's settings."""

    def __init__(self, client: redis.Redis[bytes], keys: Keys, breaker: CircuitBreaker, limiter: RateLimiter) -> None:
        _threshold, _open_seconds, lease, ttl = breaker.lua_args
        self._args = (lease, ttl, *limiter.lua_args)
        self._keys = keys
        self._script = client.register_script(_SCRIPT)

    def admit(self, job_id: str, addon: str, *, client: redis.Redis[bytes] | None = None) -> Passage:
        """May the job ``job_id`` call ``addon`` now? (``client``: run on this client instead of the registered one.)"""
        keys = [self._keys.job_done(job_id), self._keys.breaker(addon), self._keys.rate_limit(addon)]
        kind, gate, seconds = self._script(keys=keys, args=list(self._args), client=client)
        step, value = Step(_text(kind)), float(seconds)
        if step is Step.DUPLICATE:
            return Passage(step)
        if step in (Step.HELD, Step.ADMITTED):
            return Passage(step, admission=Admission(Gate(_text(gate)), value))
        return Passage(step, permit=Permit(step is Step.WAIT, max(0.0, value)))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
