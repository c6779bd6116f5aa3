"""The factory builds what common's parsers and contract accept."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from asset_post_process.common.contract import AssetEvent
from asset_post_process.common.crypto import ApiKeyCipher
from asset_post_process.common.filespin import parse_user_settings
from asset_post_process.common.filespin_models import AddonSettings, AssetData
from asset_post_process.devkit import factory


def test_assets_parse_as_filespin_asset_data() -> None:
    for build, content_type in (
        (factory.image_asset, "image/jpeg"),
        (factory.video_asset, "video/mp4"),
        (factory.document_asset, "application/pdf"),
    ):
        raw = build(data={"assetCode": "GM"}, data_schema_id=1)
        assert re.fullmatch(r"[0-9a-f]{32}", raw["id"])
        parsed = AssetData.from_api(raw)
        assert parsed.content_type == content_type
        assert parsed.data == {"assetCode": "GM"}
    assert factory.new_asset_id() != factory.new_asset_id()


def test_settings_parse_with_hooks_criteria_and_disposition() -> None:
    criteria = {"data_schema_id": 1, "fields": {"assetCode": "GM"}}
    data = factory.user_settings(
        factory.addon("FACE_RECOGNITION", events=["file-saved", "file-deleted"]),
        factory.addon(
            "SCENE_CLASSIFICATION",
            hooks={"file-data-updated": factory.hook(["image/jpeg"], schema_criteria=criteria)},
            disposition={"confidence_threshold": 0.8},
            hooks_key="event_hooks",
        ),
        factory.addon("EMOTION_RECOGNITION", events=["file-saved"], enabled=False),
    )
    settings = parse_user_settings({"status": "OK", "data": data})
    addons = {key: AddonSettings.from_api(block) for key, block in settings.addons.items()}
    face = addons["FACE_RECOGNITION"]
    assert face.added
    assert face.enabled
    assert set(face.hooks) == {"file-saved", "file-deleted"}
    assert face.hooks["file-saved"].content_types == ["image/*"]
    scene = addons["SCENE_CLASSIFICATION"]
    criteria_parsed = scene.hooks["file-data-updated"].schema_criteria
    assert criteria_parsed is not None
    assert criteria_parsed.fields == {"assetCode": "GM"}
    assert scene.disposition == {"confidence_threshold": 0.8}
    assert not addons["EMOTION_RECOGNITION"].enabled
    assert set(parse_user_settings({"status": "OK", "data": factory.all_builtin_addons()}).addons) == set(
        factory.BUILTIN_ADDONS
    )


def test_messages_are_valid_and_carry_the_key_encrypted() -> None:
    key = factory.new_fernet_key()
    messages = factory.MessageFactory([key])
    apikey = factory.new_apikey()
    asset = factory.image_asset()
    saved = messages.file_saved(apikey, asset, addons=["FACE_RECOGNITION"], force_processing=True)
    event = AssetEvent.model_validate(saved)
    assert event.event_type == "file-saved"
    assert event.addons == ["FACE_RECOGNITION"]
    assert event.force_processing
    assert saved["event_id"]
    assert apikey not in str(saved)
    assert ApiKeyCipher([key]).decrypt(saved["apikey"]).reveal() == apikey

    deleted = messages.file_deleted(apikey, asset)
    assert deleted["asset_data"]["id"] == asset["id"]
    with pytest.raises(ValidationError):
        messages.build(apikey=apikey, asset_id="not-hex", event_type="file-saved")
