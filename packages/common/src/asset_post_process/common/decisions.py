"""The latest planning decisions per asset, kept in Redis for a while so an operator can ask why."""

from __future__ import annotations

import json
from typing import Any

import redis

from asset_post_process.common.keys import Keys


class DecisionLog:
    """A short, expiring list of decision records per asset, newest first."""

    def __init__(
        self, client: redis.Redis[bytes], keys: Keys, *, per_asset: int = 50, ttl_seconds: int = 604_800
    ) -> None:
        self._redis = client
        self._keys = keys
        self._per_asset = per_asset
        self._ttl = ttl_seconds

    def record(self, asset_id: str, entry: dict[str, Any]) -> None:
        """Keep ``entry`` (JSON-ready, no secrets) as the newest record for ``asset_id``."""
        pipe = self._redis.pipeline()
        self.queue(pipe, asset_id, entry)
        pipe.execute()

    def queue(self, pipe: redis.client.Pipeline[Any], asset_id: str, entry: dict[str, Any]) -> None:
        """:meth:`record` as commands queued on ``pipe`` (the caller executes it, with its own commands)."""
        key = self._keys.decisions(asset_id)
        pipe.lpush(key, json.dumps(entry, separators=(",", ":"), default=str))
        pipe.ltrim(key, 0, self._per_asset - 1)
        pipe.expire(key, self._ttl)

    def latest(self, asset_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """Up to ``limit`` records for ``asset_id``, newest first."""
        return [json.loads(raw) for raw in self._redis.lrange(self._keys.decisions(asset_id), 0, limit - 1)]
