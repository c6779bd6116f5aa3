"""API key encryption: Fernet tokens under rotating keys (MultiFernet), and HMAC fingerprints.

The plaintext key lives in a :class:`PlainApiKey`, whose ``repr`` and ``str`` never show it; it is read
with :meth:`PlainApiKey.reveal` at the one place that puts it on the wire.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from asset_post_process.common.redaction import register_secret


class InvalidApiKeyToken(Exception):
    """The token is not a Fernet token under any configured key (tampered, foreign key or expired)."""


class PlainApiKey:
    """A decrypted API key. Its text is only available through :meth:`reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value:
            raise ValueError("empty API key")
        self._value = value
        register_secret(value)

    def reveal(self) -> str:
        """The plaintext key, for the request header and nothing else."""
        return self._value

    def __repr__(self) -> str:
        return "PlainApiKey('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlainApiKey) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a PlainApiKey is never serialized")


class ApiKeyCipher:
    """Encrypts with the newest key, decrypts with any configured key (newest first)."""

    def __init__(self, keys: Sequence[str], max_age_seconds: int | None = None) -> None:
        if not keys:
            raise ValueError("at least one Fernet key is required")
        self._fernet = MultiFernet([Fernet(key) for key in keys])
        self._max_age = max_age_seconds
        self._fingerprint_key = hashlib.sha256(b"asset-post-process/fingerprint/v1" + keys[0].encode()).digest()

    def encrypt(self, plaintext: str) -> str:
        """A new token for ``plaintext`` under the newest key."""
        if not plaintext:
            raise ValueError("empty API key")
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> PlainApiKey:
        """The key inside ``token``; :class:`InvalidApiKeyToken` when no configured key opens it."""
        try:
            raw = self._fernet.decrypt(token.encode(), ttl=self._max_age)
        except (InvalidToken, UnicodeError, TypeError, ValueError):
            raise InvalidApiKeyToken(
                "the apikey token cannot be decrypted with any configured key (tampered, foreign or expired)"
            ) from None
        try:
            return PlainApiKey(raw.decode())
        except (UnicodeDecodeError, ValueError):
            raise InvalidApiKeyToken("the apikey token does not hold a usable API key") from None

    def rotate(self, token: str) -> str:
        """Re-encrypt ``token`` under the newest key (for stored tokens during a key rotation)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise InvalidApiKeyToken("the apikey token cannot be decrypted with any configured key") from None

    def fingerprint(self, key: PlainApiKey) -> str:
        """A stable, non-reversible id of ``key`` for cache keys and logs (HMAC-SHA256, 16 hex chars)."""
        digest = hmac.new(self._fingerprint_key, key.reveal().encode(), hashlib.sha256).hexdigest()
        return digest[:16]


def generate_key() -> str:
    """A new Fernet key (url-safe base64 text)."""
    return Fernet.generate_key().decode()
