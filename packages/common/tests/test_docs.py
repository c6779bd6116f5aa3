from __future__ import annotations

from pathlib import Path

from asset_post_process.common.settings import Settings, env_name

README = Path(__file__).resolve().parents[1] / "README.md"


def documented_names(text: str) -> set[str]:
    """Variable names the README mentions; "`X_POOL` / `_CONCURRENCY`" documents X_CONCURRENCY too."""
    names = set()
    for word in text.replace("`", " ").split():
        if word.startswith("POSTPROCESS_"):
            names.add(word)
            if word.endswith("_POOL"):
                names.add(word.removesuffix("_POOL") + "_CONCURRENCY")
    return names


def test_every_setting_is_documented() -> None:
    documented = documented_names(README.read_text(encoding="utf-8"))
    assert sorted(env_name(name) for name in Settings.model_fields if env_name(name) not in documented) == []
