from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis

from asset_post_process.common.crypto import ApiKeyCipher
from asset_post_process.common.deadletters import DeadLetter, DeadLetterFilter, DeadLetterStore
from asset_post_process.common.keys import Keys
from asset_post_process.common.redaction import REDACTED, register_secret


def letter(**fields: Any) -> DeadLetter:
    defaults: dict[str, Any] = {
        "task": "trigger_addon",
        "queue": "q",
        "message": {"asset_id": "a" * 32},
        "reason_code": "http_403",
        "reason": "addon: HTTP 403",
    }
    return DeadLetter(**{**defaults, **fields})


def test_add_list_get(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    store = DeadLetterStore(redis_client, keys)
    first = store.add(letter(addon="FACE_RECOGNITION", failed_at=time.time() - 10))
    second = store.add(letter(addon="SCENE_CLASSIFICATION"))
    assert store.count() == 2
    assert [d.id for d in store.list()] == [second.id, first.id]
    assert store.get(first.id) == first
    assert store.get("nope") is None


def test_filters(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    store = DeadLetterStore(redis_client, keys)
    old = store.add(letter(addon="FACE_RECOGNITION", reason_code="http_403", failed_at=time.time() - 3600))
    new = store.add(letter(addon="FACE_RECOGNITION", reason_code="retries_exhausted"))
    other = store.add(letter(addon="SCENE_CLASSIFICATION", task="process_asset"))
    assert [d.id for d in store.list(DeadLetterFilter(addon="FACE_RECOGNITION"))] == [new.id, old.id]
    assert [d.id for d in store.list(DeadLetterFilter(reason_code="http_403"))] == [other.id, old.id]
    assert [d.id for d in store.list(DeadLetterFilter(older_than_seconds=600))] == [old.id]
    assert [d.id for d in store.list(DeadLetterFilter(newer_than_seconds=600, task="process_asset"))] == [other.id]


def test_bounded_oldest_go_first(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    store = DeadLetterStore(redis_client, keys, max_entries=3)
    ids = [store.add(letter(failed_at=1000.0 + i)).id for i in range(5)]
    assert store.count() == 3
    assert {d.id for d in store.list()} == set(ids[2:])
    assert redis_client.hlen(keys.dead_letter_data) == 3


def test_replay_sends_then_removes(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    store = DeadLetterStore(redis_client, keys)
    keep = store.add(letter(addon="SCENE_CLASSIFICATION"))
    replay = store.add(letter(addon="FACE_RECOGNITION", message={"asset_id": "b" * 32}))
    sent: list[tuple[str, str, Any]] = []
    assert store.replay(lambda *a: sent.append(a), DeadLetterFilter(addon="FACE_RECOGNITION")) == 1
    assert sent == [("trigger_addon", "q", {"asset_id": "b" * 32})]
    assert store.get(replay.id) is None
    assert store.get(keep.id) is not None


def test_a_failed_send_keeps_the_letter(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    store = DeadLetterStore(redis_client, keys)
    kept = store.add(letter())

    def broken(*_: Any) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        store.replay(broken)
    assert store.get(kept.id) is not None


def test_purge_by_filter(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    store = DeadLetterStore(redis_client, keys)
    store.add(letter(addon="A"))
    store.add(letter(addon="B"))
    assert store.purge(DeadLetterFilter(addon="A")) == 1
    assert [d.addon for d in store.list()] == ["B"]
    assert store.purge() == 1
    assert store.count() == 0


def test_encrypted_keys_stay_and_plaintext_keys_never_land(
    redis_client: redis.Redis[bytes], keys: Keys, fernet_key: str
) -> None:
    store = DeadLetterStore(redis_client, keys)
    token = ApiKeyCipher([fernet_key]).encrypt("the-plaintext-key-9")
    with_token = store.add(letter(message={"apikey": token, "asset_id": "a" * 32}))
    assert with_token.message["apikey"] == token
    assert with_token.replayable

    plaintext = store.add(letter(message={"apikey": "a-plaintext-key-sent-by-mistake", "asset_id": "a" * 32}))
    assert plaintext.message["apikey"] == REDACTED
    assert not plaintext.replayable

    register_secret("known-secret-in-text")
    nested = store.add(letter(message={"note": "known-secret-in-text"}, reason="failed with known-secret-in-text"))
    raw = b"".join(redis_client.hvals(keys.dead_letter_data))
    assert b"a-plaintext-key-sent-by-mistake" not in raw
    assert b"known-secret-in-text" not in raw
    assert not nested.replayable
    assert store.replay(lambda *a: None) == 1  # only the one with an intact token


def test_oversize_and_odd_messages_are_kept_safely(redis_client: redis.Redis[bytes], keys: Keys) -> None:
    store = DeadLetterStore(redis_client, keys)
    huge = store.add(letter(message={"blob": "x" * 1_000_000}))
    assert huge.message["original_bytes"] > 1_000_000
    assert len(json.dumps(huge.message)) < 10_000
    assert not huge.replayable
    raw_text = store.add(letter(message="not even json {"))
    assert store.get(raw_text.id) is not None
    assert store.get(raw_text.id).message == "not even json {"  # type: ignore[union-attr]
