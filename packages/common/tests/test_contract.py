from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from asset_post_process.common.contract import SCHEMAS, AssetEvent, EventType, TriggerJob, render_schema
from asset_post_process.common.crypto import ApiKeyCipher

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"
ASSET_ID = "5f2a0c3e9b1d4e6f8a7b6c5d4e3f2a1b"


@pytest.fixture
def token(fernet_key: str) -> str:
    return ApiKeyCipher([fernet_key]).encrypt("user-api-key-123")


def documented_example(token: str) -> dict[str, Any]:
    """FileSpin's documented message (reference/filespin-api.md), with a real token and asset id."""
    return {
        "apikey": token,
        "asset_id": ASSET_ID,
        "event_type": "file-data-updated",
        "addons": ["SCENE_CLASSIFICATION"],
        "force_processing": False,
        "asset_data": None,
    }


def test_the_documented_example_is_valid(token: str) -> None:
    event = AssetEvent.model_validate(documented_example(token))
    assert event.event_type is EventType.FILE_DATA_UPDATED
    assert event.addons == ["SCENE_CLASSIFICATION"]
    assert event.schema_version == 1
    assert event.event_id is None
    assert event.effective_event_id.startswith("d-")


def test_unknown_fields_are_ignored(token: str) -> None:
    message = {**documented_example(token), "priority": 5, "new_field_from_a_newer_backend": {"x": 1}}
    assert AssetEvent.model_validate(message).asset_id == ASSET_ID


def test_absent_optionals_take_their_documented_defaults(token: str) -> None:
    event = AssetEvent.model_validate({"apikey": token, "asset_id": ASSET_ID, "event_type": "file-saved"})
    assert event.addons == []
    assert event.force_processing is False
    assert event.asset_data is None


@pytest.mark.parametrize(
    "asset_id",
    [ASSET_ID, ASSET_ID.upper(), "5f2a0c3e-9b1d-4e6f-8a7b-6c5d4e3f2a1b"],
)
def test_asset_ids_of_32_and_36_characters_are_accepted(token: str, asset_id: str) -> None:
    assert AssetEvent.model_validate({**documented_example(token), "asset_id": asset_id}).asset_id == asset_id


@pytest.mark.parametrize(
    "asset_id",
    [
        "",
        "5f2a",
        ASSET_ID + "0",
        "zz2a0c3e9b1d4e6f8a7b6c5d4e3f2a1b",
        "../../etc/passwd",
        "5f2a0c3e-9b1d-4e6f-8a7b6c5d4e3f2a1b-",
    ],
)
def test_bad_asset_ids_are_refused(token: str, asset_id: str) -> None:
    with pytest.raises(ValidationError, match="asset_id"):
        AssetEvent.model_validate({**documented_example(token), "asset_id": asset_id})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_type", "file-exploded"),
        ("event_type", None),
        ("addons", ["scene_classification"]),
        ("addons", "SCENE_CLASSIFICATION"),
        ("addons", ["A" * 65]),
        ("addons", [f"ADDON_{i}" for i in range(65)]),
        ("force_processing", "yes"),
        ("force_processing", 1),
        ("asset_data", "not an object"),
        ("apikey", ""),
        ("apikey", "x" * 5000),
        ("apikey", 12345),
        ("event_id", "has spaces"),
        ("schema_version", 2),
    ],
)
def test_bad_fields_are_refused_and_named(token: str, field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        AssetEvent.model_validate({**documented_example(token), field: value})
    assert field in str(caught.value)


@pytest.mark.parametrize("missing", ["apikey", "asset_id", "event_type"])
def test_required_fields(token: str, missing: str) -> None:
    message = documented_example(token)
    del message[missing]
    with pytest.raises(ValidationError, match=missing):
        AssetEvent.model_validate(message)


def test_file_deleted_needs_asset_data(token: str) -> None:
    message = {**documented_example(token), "event_type": "file-deleted", "asset_data": None}
    with pytest.raises(ValidationError, match="asset_data is required"):
        AssetEvent.model_validate(message)
    message["asset_data"] = {"id": ASSET_ID, "content_type": "image/jpeg"}
    assert AssetEvent.model_validate(message).asset_data == message["asset_data"]


def test_addons_are_deduplicated_in_order(token: str) -> None:
    message = {**documented_example(token), "addons": ["B_ADDON", "A_ADDON", "B_ADDON"]}
    assert AssetEvent.model_validate(message).addons == ["B_ADDON", "A_ADDON"]


def test_null_addons_mean_all(token: str) -> None:
    assert AssetEvent.model_validate({**documented_example(token), "addons": None}).addons == []


def test_derived_event_id_is_stable_across_redeliveries(token: str) -> None:
    message = documented_example(token)
    first = AssetEvent.model_validate(message).effective_event_id
    again = AssetEvent.model_validate(json.loads(json.dumps(message))).effective_event_id
    reordered = AssetEvent.model_validate(dict(reversed(list(message.items())))).effective_event_id
    assert first == again == reordered


def test_derived_event_ids_differ_between_events(token: str, fernet_key: str) -> None:
    base = AssetEvent.model_validate(documented_example(token)).effective_event_id
    forced = AssetEvent.model_validate({**documented_example(token), "force_processing": True}).effective_event_id
    # The same event sent again by the backend carries a fresh token (Fernet tokens embed a random IV).
    resent_token = ApiKeyCipher([fernet_key]).encrypt("user-api-key-123")
    resent = AssetEvent.model_validate(documented_example(resent_token)).effective_event_id
    assert len({base, forced, resent}) == 3


def test_producer_event_id_wins(token: str) -> None:
    event = AssetEvent.model_validate({**documented_example(token), "event_id": "evt-42"})
    assert event.effective_event_id == "evt-42"
    assert event.to_message()["event_id"] == "evt-42"


def test_the_encrypted_key_is_not_in_the_repr(token: str) -> None:
    assert token not in repr(AssetEvent.model_validate(documented_example(token)))


def test_trigger_job_round_trips(token: str) -> None:
    job = TriggerJob(
        job_id=TriggerJob.make_job_id("evt-1", "FACE_RECOGNITION"),
        event_id="evt-1",
        asset_id=ASSET_ID,
        addon="FACE_RECOGNITION",
        action="process",
        apikey=token,
        disposition={"update_metadata": True},
    )
    assert job.job_id == "evt-1:FACE_RECOGNITION"
    assert TriggerJob.model_validate(json.loads(job.model_dump_json())) == job
    assert token not in repr(job)


def test_trigger_job_refuses_an_unknown_action(token: str) -> None:
    with pytest.raises(ValidationError, match="action"):
        TriggerJob.model_validate(
            {"job_id": "j", "event_id": "e", "asset_id": ASSET_ID, "addon": "X", "action": "explode", "apikey": token}
        )


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_committed_json_schemas_match_the_models(name: str) -> None:
    committed = (SCHEMA_DIR / name).read_text(encoding="utf-8")
    assert committed == render_schema(name), (
        f"packages/common/schemas/{name} is out of date: run `make schemas` and bump common's version"
    )
