"""The broker transport: kombu's Redis transport, except that a payload that is no kombu message is dropped.

kombu pops a queue's Redis list with BRPOP and decodes the item as its JSON envelope inside the worker's event
loop; anything else there (bytes that are not JSON, JSON that is not an envelope: a broken producer, a manual
LPUSH) raised out of the loop, and Celery stopped the whole worker with "Unrecoverable error". One such item
killed every worker that popped it. This channel logs and drops it instead; the item was already removed from
the list, and nothing was recorded as unacknowledged, so nothing else changes.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)

#: What decoding an item that no kombu producer wrote raises (``JSONDecodeError`` and ``UnicodeDecodeError``
#: are ``ValueError``s; a JSON value that is no envelope gives ``KeyError``/``TypeError``/``AttributeError``).
NOT_A_MESSAGE = (ValueError, KeyError, TypeError, AttributeError)

#: The value of ``broker_transport`` that selects this transport (the URL stays ``redis://``).
TRANSPORT = "asset_post_process.common.broker:Transport"


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    """A Redis channel that survives a queue item that is not a kombu message."""

    def _brpop_read(self, **options: Any) -> Any:
        try:
            return super()._brpop_read(**options)
        except NOT_A_MESSAGE as exc:
            log.error(
                "dropped an item of the queue that is not a kombu message (%s)",
                type(exc).__name__,
                extra={"reason_code": "not_a_message"},
            )
            return True


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel
