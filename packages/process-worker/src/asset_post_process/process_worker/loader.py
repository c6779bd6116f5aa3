"""What the planner needs from FileSpin: the user's settings (cached) and the asset's data (always fresh).

Settings are cached in Redis under an HMAC fingerprint of the key (never the key), for
``POSTPROCESS_SETTINGS_CACHE_TTL_SECONDS``, loaded once at a time across every worker (single flight), and only
the part the planner reads (the ``addons`` blocks) is kept. Asset data is fetched for every event: an event
about an asset must see its current data. ``file-deleted`` uses the message's ``asset_data`` and never asks
the backend (the asset may already be purged).
"""

from __future__ import annotations

from typing import Any

from asset_post_process.common.cache import SingleFlightCache
from asset_post_process.common.contract import AssetEvent, EventType
from asset_post_process.common.crypto import ApiKeyCipher, PlainApiKey
from asset_post_process.common.filespin import FileSpinClient, FileSpinError, parse_user_settings
from asset_post_process.common.filespin_models import AssetData, UserSettings
from asset_post_process.common.keys import Keys


class InvalidAssetData(ValueError):
    """The message's own ``asset_data`` (``file-deleted``) is not a usable asset object."""


class Loader:
    """Loads settings and asset data for events, through the shared cache and FileSpin client."""

    def __init__(
        self,
        filespin: FileSpinClient,
        cache: SingleFlightCache,
        cipher: ApiKeyCipher,
        keys: Keys,
        settings_ttl_seconds: int,
    ) -> None:
        self._filespin = filespin
        self._cache = cache
        self._cipher = cipher
        self._keys = keys
        self._ttl = settings_ttl_seconds

    def settings_cache_key(self, apikey: PlainApiKey) -> str:
        """The cache key of this user's settings (carries a fingerprint, never the key)."""
        return self._keys.settings_cache(self._cipher.fingerprint(apikey))

    def user_settings(self, apikey: PlainApiKey) -> UserSettings:
        """The user's settings; raises :class:`FileSpinError` (a malformed answer is permanent, never cached)."""

        def load() -> dict[str, Any]:
            parsed = parse_user_settings(self._filespin.get_user_settings_payload(apikey))
            return parsed.model_dump(mode="json")

        cached = self._cache.get_or_load(self.settings_cache_key(apikey), self._ttl, load)
        return parse_user_settings(cached)

    def asset(self, event: AssetEvent, apikey: PlainApiKey) -> AssetData:
        """The asset as it is now (``GET .../data``), or the message's ``asset_data`` for ``file-deleted``.

        Raises :class:`FileSpinError` from the backend, :class:`InvalidAssetData` for a malformed ``asset_data``.
        """
        if event.event_type is EventType.FILE_DELETED:
            try:
                return AssetData.from_api(event.asset_data)
            except ValueError as exc:
                raise InvalidAssetData(f"asset_data: {exc}") from None
        return self._filespin.get_asset_data(apikey, event.asset_id)


__all__ = ["FileSpinError", "InvalidAssetData", "Loader"]
