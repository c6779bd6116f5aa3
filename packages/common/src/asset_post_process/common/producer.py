"""What the FileSpin backend calls to enqueue an asset event.

    from asset_post_process.common.producer import enqueue_asset_event

    event_id = enqueue_asset_event(apikey="<plaintext or token>", asset_id="<32 hex>", event_type="file-saved")

The key is encrypted with the newest configured Fernet key before it leaves the process.
"""

from __future__ import annotations

import functools
from typing import Any

from celery import Celery

from asset_post_process.common.celeryapp import make_producer
from asset_post_process.common.contract import PROCESS_ASSET_TASK, AssetEvent
from asset_post_process.common.crypto import ApiKeyCipher, InvalidApiKeyToken, PlainApiKey
from asset_post_process.common.settings import Settings, get_settings


def looks_like_token(value: str) -> bool:
    """Whether ``value`` has the shape of a Fernet token (version byte 0x80, base64 ``gAAAAA``)."""
    return value.startswith("gAAAAA") and len(value) >= 100


class EventProducer:
    """Validates, encrypts and sends ``process_asset`` messages to the process queue."""

    def __init__(self, app: Celery, cipher: ApiKeyCipher, queue: str) -> None:
        self._app = app
        self._cipher = cipher
        self._queue = queue

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> EventProducer:
        """A producer for the configured broker, keys and queue."""
        settings = settings or get_settings()
        cipher = ApiKeyCipher(settings.fernet_keys, settings.apikey_max_age_seconds)
        return cls(make_producer(settings), cipher, settings.process_queue)

    def encrypted(self, apikey: str | PlainApiKey) -> str:
        """A token for ``apikey``: a plaintext key is encrypted, a token under a configured key passes as is."""
        if isinstance(apikey, PlainApiKey):
            return self._cipher.encrypt(apikey.reveal())
        if looks_like_token(apikey):
            self._cipher.decrypt(apikey)  # raises InvalidApiKeyToken for a token no configured key opens
            return apikey
        return self._cipher.encrypt(apikey)

    def build_message(
        self,
        *,
        apikey: str | PlainApiKey,
        asset_id: str,
        event_type: str,
        addons: list[str] | None = None,
        force_processing: bool = False,
        asset_data: dict[str, Any] | None = None,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        """A validated ``process_asset`` message; raises ``pydantic.ValidationError`` if it is not valid."""
        event = AssetEvent.model_validate(
            {
                "apikey": self.encrypted(apikey),
                "asset_id": asset_id,
                "event_type": event_type,
                "addons": addons or [],
                "force_processing": force_processing,
                "asset_data": asset_data,
                "event_id": event_id,
            }
        )
        return event.to_message()

    def send_message(self, message: dict[str, Any]) -> str:
        """Send an already-built message; returns its ``event_id``."""
        self._app.send_task(PROCESS_ASSET_TASK, args=[message], queue=self._queue)
        return str(message["event_id"])

    def enqueue_asset_event(self, **fields: Any) -> str:
        """Validate, encrypt and send one event (fields as :meth:`build_message`); returns its ``event_id``."""
        return self.send_message(self.build_message(**fields))

    def close(self) -> None:
        """Release the broker connections."""
        self._app.close()


@functools.cache
def default_producer() -> EventProducer:
    """The process-wide producer built from the environment's settings."""
    return EventProducer.from_settings()


def enqueue_asset_event(**fields: Any) -> str:
    """Enqueue one event with the default producer; see :meth:`EventProducer.build_message` for the fields."""
    return default_producer().enqueue_asset_event(**fields)


__all__ = [
    "EventProducer",
    "InvalidApiKeyToken",
    "default_producer",
    "enqueue_asset_event",
    "looks_like_token",
]
