"""The long-lived objects a worker, the API or the CLI needs, built once per process from settings."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import redis

from asset_post_process.common.cache import SingleFlightCache
from asset_post_process.common.crypto import ApiKeyCipher
from asset_post_process.common.deadletters import DeadLetterStore
from asset_post_process.common.decisions import DecisionLog
from asset_post_process.common.filespin import FileSpinClient
from asset_post_process.common.keys import Keys
from asset_post_process.common.metrics import Metrics
from asset_post_process.common.redis_client import connect
from asset_post_process.common.registry import AddonRegistry
from asset_post_process.common.settings import Settings, get_settings


@dataclass
class Services:
    """Shared clients and stores; cheap to pass around, built by :meth:`from_settings`."""

    settings: Settings
    keys: Keys
    redis: redis.Redis[bytes]
    cipher: ApiKeyCipher
    registry: AddonRegistry
    filespin: FileSpinClient
    cache: SingleFlightCache
    dead_letters: DeadLetterStore
    decisions: DecisionLog
    metrics: Metrics

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        """Build every service from ``settings``."""
        keys = Keys(settings.key_prefix)
        client = connect(settings.effective_cache_url)
        return cls(
            settings=settings,
            keys=keys,
            redis=client,
            cipher=ApiKeyCipher(settings.fernet_keys, settings.apikey_max_age_seconds),
            registry=AddonRegistry.build(settings.filespin_api_url, settings.addon_registry, settings.addon_urls),
            filespin=FileSpinClient(
                settings.filespin_api_url,
                connect_timeout=settings.http_connect_timeout,
                read_timeout=settings.http_read_timeout,
                max_connections=settings.http_max_connections,
            ),
            cache=SingleFlightCache(client, keys),
            dead_letters=DeadLetterStore(client, keys, settings.dead_letter_max),
            decisions=DecisionLog(
                client,
                keys,
                per_asset=settings.decisions_per_asset,
                ttl_seconds=settings.decisions_ttl_seconds,
            ),
            metrics=Metrics(client, keys),
        )


@functools.cache
def get_services() -> Services:
    """This process's services, built on first use (after a fork, so sockets are not shared)."""
    return Services.from_settings(get_settings())
