"""Secret redaction for anything that leaves the process as text (logs, dead-letter reasons, API answers).

Decrypted API keys register themselves here (the most recent ones, bounded); :func:`redact` replaces any
registered secret, any ``X-FileSpin-Api-Key`` header value and any Fernet token in a text.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict

REDACTED = "[REDACTED]"
_MAX_SECRETS = 512
_MIN_SECRET_LENGTH = 6

_FERNET_TOKEN = re.compile(r"gAAAAA[A-Za-z0-9_\-]{20,}={0,2}")
_HEADER_VALUE = re.compile(r"(?i)(x-filespin-api-key|authorization)(['\"]?\s*[:=]\s*['\"]?)([^\s'\",}]+)")

_lock = threading.Lock()
_secrets: OrderedDict[str, None] = OrderedDict()


def register_secret(value: str) -> None:
    """Remember ``value`` as a secret to scrub from every text passed to :func:`redact`."""
    if len(value) < _MIN_SECRET_LENGTH:
        return
    with _lock:
        _secrets[value] = None
        _secrets.move_to_end(value)
        while len(_secrets) > _MAX_SECRETS:
            _secrets.popitem(last=False)


def redact(text: str) -> str:
    """``text`` with secrets, API key headers and Fernet tokens replaced by ``[REDACTED]``."""
    with _lock:
        known = [s for s in _secrets if s in text]
    for secret in known:
        text = text.replace(secret, REDACTED)
    text = _HEADER_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _FERNET_TOKEN.sub(REDACTED, text)


def safe_excerpt(text: str, limit: int = 200) -> str:
    """A redacted, single-line excerpt of ``text`` of at most ``limit`` characters."""
    flat = " ".join(redact(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
