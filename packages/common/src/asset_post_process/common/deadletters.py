"""The dead-letter store: every message the service gave up on, with why, kept in Redis for replay.

Entries are bounded (the oldest go first beyond ``POSTPROCESS_DEAD_LETTER_MAX``), hold the message with
its API key still encrypted, and can be listed, shown, replayed onto their queue and purged.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from asset_post_process.common.keys import Keys
from asset_post_process.common.redaction import REDACTED, redact

#: A message larger than this (as JSON) is kept as an excerpt only, and cannot be replayed.
MAX_STORED_MESSAGE_BYTES = 256 * 1024

_ADD = """
redis.call('hset', KEYS[2], ARGV[1], ARGV[3])
redis.call('zadd', KEYS[1], ARGV[2], ARGV[1])
local excess = redis.call('zcard', KEYS[1]) - tonumber(ARGV[4])
if excess > 0 then
  local old = redis.call('zrange', KEYS[1], 0, excess - 1)
  redis.call('zremrangebyrank', KEYS[1], 0, excess - 1)
  redis.call('hdel', KEYS[2], unpack(old))
  return excess
end
return 0
"""

Sender = Callable[[str, str, Any], None]
"""``send(task_name, queue, message)``: puts a message back on a queue."""


@dataclass(frozen=True)
class DeadLetter:
    """One message the service gave up on."""

    task: str
    queue: str
    message: Any
    reason_code: str
    reason: str
    attempts: int = 1
    event_id: str | None = None
    asset_id: str | None = None
    addon: str | None = None
    status_code: int | None = None
    failed_at: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    replayable: bool = True

    def to_json(self) -> str:
        """The entry as stored."""
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, raw: bytes | str) -> DeadLetter:
        """An entry read back from the store."""
        return cls(**json.loads(raw))


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters an operation applies to; every given criterion must hold."""

    addon: str | None = None
    reason_code: str | None = None
    task: str | None = None
    older_than_seconds: float | None = None
    newer_than_seconds: float | None = None

    def matches(self, letter: DeadLetter, now: float) -> bool:
        """Whether ``letter`` passes this filter."""
        age = now - letter.failed_at
        return (
            (self.addon is None or letter.addon == self.addon)
            and (self.reason_code is None or letter.reason_code == self.reason_code)
            and (self.task is None or letter.task == self.task)
            and (self.older_than_seconds is None or age >= self.older_than_seconds)
            and (self.newer_than_seconds is None or age <= self.newer_than_seconds)
        )


_FERNET_TOKEN = re.compile(r"gAAAAA[A-Za-z0-9_\-]{20,}={0,2}")


def _is_fernet_token(value: object) -> bool:
    return isinstance(value, str) and value.startswith("gAAAAA") and len(value) >= 100


def sanitize_message(message: Any) -> tuple[Any, bool]:
    """``message`` made safe to store: an ``apikey`` that is not a Fernet token is dropped (a producer
    that sent a plaintext key must not have it kept), known secrets are scrubbed, oversize messages cut.
    Returns the safe message and whether it can still be replayed."""
    replayable = True
    if isinstance(message, dict) and "apikey" in message and not _is_fernet_token(message["apikey"]):
        message = {**message, "apikey": REDACTED}
        replayable = False
    try:
        text = json.dumps(message, separators=(",", ":"), sort_keys=True, default=repr)
    except (TypeError, ValueError):
        text = repr(message)
    scrubbed = redact_except_tokens(text)
    if scrubbed != text:
        replayable = False
    if len(scrubbed) > MAX_STORED_MESSAGE_BYTES:
        return {"excerpt": scrubbed[:4096], "original_bytes": len(scrubbed)}, False
    return json.loads(scrubbed) if scrubbed != text else message, replayable


def redact_except_tokens(text: str) -> str:
    """Scrub registered plaintext secrets from ``text`` but keep Fernet tokens (they are encrypted)."""
    tokens: dict[str, str] = {}

    def keep(match: str) -> str:
        placeholder = f"\x00{len(tokens)}\x00"
        tokens[placeholder] = match
        return placeholder

    protected = _FERNET_TOKEN.sub(lambda m: keep(m.group(0)), text)
    scrubbed = redact(protected)
    for placeholder, token in tokens.items():
        scrubbed = scrubbed.replace(placeholder, token)
    return scrubbed


class DeadLetterStore:
    """Dead letters in Redis: a hash of entries and a sorted index by failure time, bounded in size."""

    def __init__(self, client: redis.Redis[bytes], keys: Keys, max_entries: int = 10_000) -> None:
        self._redis = client
        self._keys = keys
        self._max = max_entries
        self._add = client.register_script(_ADD)

    def add(self, letter: DeadLetter) -> DeadLetter:
        """Store ``letter`` (message sanitized, reason redacted); returns what was stored."""
        message, replayable = sanitize_message(letter.message)
        stored = DeadLetter(
            **{
                **asdict(letter),
                "message": message,
                "reason": redact(letter.reason)[:2000],
                "replayable": letter.replayable and replayable,
            }
        )
        self._add(
            keys=[self._keys.dead_letter_index, self._keys.dead_letter_data],
            args=[stored.id, stored.failed_at, stored.to_json(), self._max],
        )
        return stored

    def count(self) -> int:
        """How many dead letters are stored."""
        return int(self._redis.zcard(self._keys.dead_letter_index))

    def get(self, letter_id: str) -> DeadLetter | None:
        """One dead letter by id."""
        raw = self._redis.hget(self._keys.dead_letter_data, letter_id)
        return None if raw is None else DeadLetter.from_json(raw)

    def iter(self, flt: DeadLetterFilter | None = None, *, newest_first: bool = True) -> Iterator[DeadLetter]:
        """Dead letters matching ``flt``, newest first, read in pages."""
        flt = flt or DeadLetterFilter()
        now = time.time()
        page = 500
        start = 0
        while True:
            if newest_first:
                ids = self._redis.zrevrange(self._keys.dead_letter_index, start, start + page - 1)
            else:
                ids = self._redis.zrange(self._keys.dead_letter_index, start, start + page - 1)
            if not ids:
                return
            for raw in self._redis.hmget(self._keys.dead_letter_data, ids):
                if raw is None:
                    continue
                letter = DeadLetter.from_json(raw)
                if flt.matches(letter, now):
                    yield letter
            start += page

    def list(self, flt: DeadLetterFilter | None = None, limit: int = 100) -> list[DeadLetter]:
        """Up to ``limit`` dead letters matching ``flt``, newest first."""
        result: list[DeadLetter] = []
        for letter in self.iter(flt):
            if len(result) >= limit:
                break
            result.append(letter)
        return result

    def remove(self, ids: Iterable[str]) -> int:
        """Delete dead letters by id; returns how many existed."""
        id_list = list(ids)
        if not id_list:
            return 0
        pipe = self._redis.pipeline()
        pipe.zrem(self._keys.dead_letter_index, *id_list)
        pipe.hdel(self._keys.dead_letter_data, *id_list)
        removed, _ = pipe.execute()
        return int(removed)

    def purge(self, flt: DeadLetterFilter | None = None) -> int:
        """Delete every dead letter matching ``flt``; returns how many."""
        return self.remove([letter.id for letter in list(self.iter(flt))])

    def replay(self, send: Sender, flt: DeadLetterFilter | None = None, ids: Iterable[str] | None = None) -> int:
        """Put matching replayable dead letters back on their queue, then delete them; returns how many.

        Each message is sent before its entry is deleted, so a crash in between replays it twice (the
        dedup marks make that harmless) rather than losing it.
        """
        letters = [self.get(i) for i in ids] if ids is not None else list(self.iter(flt, newest_first=False))
        replayed = 0
        for letter in letters:
            if letter is None or not letter.replayable:
                continue
            send(letter.task, letter.queue, letter.message)
            self.remove([letter.id])
            replayed += 1
        return replayed

    def clear(self) -> None:
        """Delete every dead letter."""
        self._redis.delete(self._keys.dead_letter_index, self._keys.dead_letter_data)
