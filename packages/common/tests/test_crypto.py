from __future__ import annotations

import logging
import pickle

import pytest
from cryptography.fernet import Fernet

from asset_post_process.common.crypto import ApiKeyCipher, InvalidApiKeyToken, PlainApiKey, generate_key

PLAINTEXT = "fs-live-0123456789abcdef"


def test_round_trip(fernet_key: str) -> None:
    cipher = ApiKeyCipher([fernet_key])
    token = cipher.encrypt(PLAINTEXT)
    assert PLAINTEXT not in token
    assert cipher.decrypt(token).reveal() == PLAINTEXT


def test_rotation_decrypts_old_tokens_and_encrypts_with_the_newest(fernet_key: str) -> None:
    old_cipher = ApiKeyCipher([fernet_key])
    old_token = old_cipher.encrypt(PLAINTEXT)
    newest = generate_key()
    rotated = ApiKeyCipher([newest, fernet_key])
    assert rotated.decrypt(old_token).reveal() == PLAINTEXT
    new_token = rotated.encrypt(PLAINTEXT)
    assert ApiKeyCipher([newest]).decrypt(new_token).reveal() == PLAINTEXT
    with pytest.raises(InvalidApiKeyToken):
        old_cipher.decrypt(new_token)
    assert ApiKeyCipher([newest]).decrypt(rotated.rotate(old_token)).reveal() == PLAINTEXT


def test_a_retired_key_no_longer_opens_its_tokens(fernet_key: str) -> None:
    token = ApiKeyCipher([fernet_key]).encrypt(PLAINTEXT)
    with pytest.raises(InvalidApiKeyToken):
        ApiKeyCipher([generate_key()]).decrypt(token)


@pytest.mark.parametrize("position", [0, 10, 50, -5, -1])
def test_tampering_anywhere_is_detected(fernet_key: str, position: int) -> None:
    cipher = ApiKeyCipher([fernet_key])
    token = cipher.encrypt(PLAINTEXT)
    flipped = "A" if token[position] != "A" else "B"
    tampered = token[:position] + flipped + token[position + 1 :] if position != -1 else token[:-1] + flipped
    with pytest.raises(InvalidApiKeyToken):
        cipher.decrypt(tampered)


@pytest.mark.parametrize("garbage", ["", "not a token", "gAAAAA" + "x" * 100, "\u00e9\u00e9", PLAINTEXT])
def test_garbage_is_a_typed_error_without_the_input(fernet_key: str, garbage: str) -> None:
    with pytest.raises(InvalidApiKeyToken) as caught:
        ApiKeyCipher([fernet_key]).decrypt(garbage)
    assert PLAINTEXT not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_max_age_expires_tokens(fernet_key: str) -> None:
    fernet = Fernet(fernet_key)
    token = fernet.encrypt_at_time(PLAINTEXT.encode(), current_time=1_000).decode()
    assert ApiKeyCipher([fernet_key]).decrypt(token).reveal() == PLAINTEXT
    with pytest.raises(InvalidApiKeyToken):
        ApiKeyCipher([fernet_key], max_age_seconds=3600).decrypt(token)


def test_the_plaintext_never_shows(fernet_key: str, caplog: pytest.LogCaptureFixture) -> None:
    key = ApiKeyCipher([fernet_key]).decrypt(ApiKeyCipher([fernet_key]).encrypt(PLAINTEXT))
    assert PLAINTEXT not in repr(key)
    assert PLAINTEXT not in str(key)
    assert PLAINTEXT not in f"{key}"
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("key is %s %r", key, key)
    assert PLAINTEXT not in caplog.text
    with pytest.raises(TypeError):
        pickle.dumps(key)


def test_fingerprint_is_stable_and_reveals_nothing(fernet_key: str) -> None:
    cipher = ApiKeyCipher([fernet_key])
    first = cipher.fingerprint(PlainApiKey(PLAINTEXT))
    assert first == cipher.fingerprint(PlainApiKey(PLAINTEXT))
    assert first != cipher.fingerprint(PlainApiKey(PLAINTEXT + "x"))
    assert len(first) == 16
    assert PLAINTEXT[:8] not in first
    # keyed: another deployment's keys give another fingerprint
    assert first != ApiKeyCipher([generate_key()]).fingerprint(PlainApiKey(PLAINTEXT))


def test_empty_keys_are_refused(fernet_key: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        ApiKeyCipher([fernet_key]).encrypt("")
    with pytest.raises(ValueError, match="at least one"):
        ApiKeyCipher([])
