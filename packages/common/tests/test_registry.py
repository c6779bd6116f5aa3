from __future__ import annotations

import pytest

from asset_post_process.common.registry import AddonRegistry, RegistryError


def test_builtins() -> None:
    registry = AddonRegistry.build("https://api.example")
    assert set(registry) == {"FACE_RECOGNITION", "SCENE_CLASSIFICATION", "EMOTION_RECOGNITION"}
    face = registry["FACE_RECOGNITION"]
    assert face.process_path("abc") == "/api/v1/assets/abc/addons/face_recognition"
    assert face.processed_fields == ("_filespin_fr_count",)
    assert face.delete is not None
    assert face.delete.path == "/api/v1/assets/addons/face_recognition/delete"
    assert registry["SCENE_CLASSIFICATION"].delete is None
    assert registry.base_url("FACE_RECOGNITION") == "https://api.example"


def test_extend_and_override_without_code() -> None:
    registry = AddonRegistry.build(
        "https://api.example/",
        overrides={
            "STORYBOARD": {"path": "/api/v1/assets/{asset_id}/addons/storyboard", "accepts": ["video/*"]},
            "SCENE_CLASSIFICATION": {"processed_marker": "scene_done"},
        },
        base_urls={"STORYBOARD": "http://storyboard:9000/"},
    )
    assert registry["STORYBOARD"].accepts == ("video/*",)
    assert registry.base_url("STORYBOARD") == "http://storyboard:9000"
    assert registry.base_url("SCENE_CLASSIFICATION") == "https://api.example"
    scene = registry["SCENE_CLASSIFICATION"]
    assert scene.processed_fields == ("_filespin_scene_labels", "scene_done")
    assert scene.path.endswith("/scene_classification")  # untouched fields keep their built-in value


@pytest.mark.parametrize(
    "entry",
    [{}, {"path": "/x", "unknown_field": 1}, {"path": "/x", "accepts": "image/*", "delete": {"nope": 1}}],
)
def test_bad_entries_say_which(entry: dict[str, object]) -> None:
    with pytest.raises(RegistryError, match="NEW_ADDON"):
        AddonRegistry.build("https://api.example", overrides={"NEW_ADDON": entry})
