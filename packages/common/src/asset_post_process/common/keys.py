"""Every Redis key the service writes, in one place, under one configurable prefix.

No key ever holds a secret: per-user keys carry an HMAC fingerprint of the API key, never the key.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Redis key names under ``prefix`` (``POSTPROCESS_KEY_PREFIX``)."""

    prefix: str = "postprocess"

    def settings_cache(self, key_fingerprint: str) -> str:
        """Cached user settings of the user whose key has this fingerprint."""
        return f"{self.prefix}:cache:settings:{key_fingerprint}"

    def lock(self, name: str) -> str:
        """A short-lived single-flight lock."""
        return f"{self.prefix}:lock:{name}"

    def dedup(self, event_id: str, addon: str) -> str:
        """The dispatch mark of (event, addon)."""
        return f"{self.prefix}:dedup:{event_id}:{addon}"

    def decisions(self, asset_id: str) -> str:
        """The latest planning decisions for an asset (a list, newest first)."""
        return f"{self.prefix}:decisions:{asset_id}"

    @property
    def dead_letter_index(self) -> str:
        """Sorted set of dead-letter ids by failure time."""
        return f"{self.prefix}:deadletters:index"

    @property
    def dead_letter_data(self) -> str:
        """Hash of dead-letter id -> JSON entry."""
        return f"{self.prefix}:deadletters:data"

    @property
    def delayed(self) -> str:
        """Sorted set of messages waiting for a retry, scored by due time."""
        return f"{self.prefix}:delayed"

    def job_done(self, job_id: str) -> str:
        """Mark of a trigger job that completed (so a redelivered job is not called twice)."""
        return f"{self.prefix}:done:{job_id}"

    def heartbeats(self, kind: str) -> str:
        """Sorted set of worker node -> last heartbeat time, per worker kind."""
        return f"{self.prefix}:heartbeats:{kind}"

    @property
    def outcome_counters(self) -> str:
        """Hash of ``addon|outcome`` -> count, cluster-wide."""
        return f"{self.prefix}:metrics:outcomes"

    def latency(self, addon: str) -> str:
        """Hash of latency histogram buckets of one addon's calls."""
        return f"{self.prefix}:metrics:latency:{addon}"

    def breaker(self, addon: str) -> str:
        """Circuit-breaker state of one addon."""
        return f"{self.prefix}:breaker:{addon}"

    def rate_limit(self, addon: str) -> str:
        """Rate-limit window of one addon."""
        return f"{self.prefix}:ratelimit:{addon}"
