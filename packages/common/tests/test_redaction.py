from __future__ import annotations

import json
import logging

import pytest

from asset_post_process.common.crypto import PlainApiKey
from asset_post_process.common.logs import JsonFormatter, RedactingFilter, log_context
from asset_post_process.common.redaction import REDACTED, redact, register_secret, safe_excerpt


def test_registered_secrets_are_scrubbed() -> None:
    register_secret("s3cret-value-1")
    assert redact("the key s3cret-value-1 leaked") == f"the key {REDACTED} leaked"


def test_decrypted_keys_register_themselves() -> None:
    PlainApiKey("decrypted-key-777")
    assert "decrypted-key-777" not in redact("calling with decrypted-key-777")


@pytest.mark.parametrize(
    "text",
    [
        "X-FileSpin-Api-Key: abcdef123",
        "{'x-filespin-api-key': 'abcdef123'}",
        'headers={"Authorization": "abcdef123"}',
    ],
)
def test_key_headers_are_scrubbed(text: str) -> None:
    assert "abcdef123" not in redact(text)


def test_fernet_tokens_are_scrubbed() -> None:
    token = "gAAAAABl" + "A" * 120 + "=="
    assert token not in redact(f"message with {token} inside")


def test_safe_excerpt_is_one_bounded_line() -> None:
    register_secret("excerpt-secret")
    excerpt = safe_excerpt("line one\nexcerpt-secret\n" + "x" * 500, limit=50)
    assert "\n" not in excerpt
    assert len(excerpt) == 50
    assert "excerpt-secret" not in excerpt


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("test", logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_json_formatter_carries_context_and_redacts() -> None:
    register_secret("formatter-secret")
    with log_context(event_id="evt-1", asset_id="a" * 32):
        line = JsonFormatter().format(
            _record("decided with %s", "formatter-secret", addon="FACE_RECOGNITION", outcome="skipped")
        )
    entry = json.loads(line)
    assert entry["event_id"] == "evt-1"
    assert entry["asset_id"] == "a" * 32
    assert entry["addon"] == "FACE_RECOGNITION"
    assert entry["outcome"] == "skipped"
    assert "formatter-secret" not in line
    assert entry["level"] == "INFO"


def test_context_is_restored_after_the_block() -> None:
    with log_context(event_id="outer"):
        with log_context(addon="INNER"):
            inner = json.loads(JsonFormatter().format(_record("x")))
        outer = json.loads(JsonFormatter().format(_record("x")))
    assert inner["event_id"] == "outer"
    assert inner["addon"] == "INNER"
    assert "addon" not in outer


def test_filter_scrubs_records_for_other_formatters() -> None:
    register_secret("filter-secret-1")
    record = _record("a %s b", "filter-secret-1")
    assert RedactingFilter().filter(record)
    assert "filter-secret-1" not in record.getMessage()


def test_filter_keeps_mapping_arguments_and_scrubs_them() -> None:
    # Celery logs "Task %(name)s[%(id)s] received" with a mapping; turning it into a tuple broke every such line.
    register_secret("mapping-secret-7")
    record = logging.LogRecord("celery", logging.INFO, __file__, 1, "Task %(name)s[%(id)s] %(note)s", None, None)
    record.args = {"name": "trigger_addon", "id": "abc", "note": "with mapping-secret-7"}
    assert RedactingFilter().filter(record)
    assert record.getMessage() == f"Task trigger_addon[abc] with {REDACTED}"
