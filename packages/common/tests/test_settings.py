from __future__ import annotations

from pathlib import Path

import pytest

from asset_post_process.common.settings import ConfigurationError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("POSTPROCESS_"):
            monkeypatch.delenv(name)


def test_defaults_follow_the_design(monkeypatch: pytest.MonkeyPatch, fernet_key: str) -> None:
    monkeypatch.setenv("POSTPROCESS_APIKEY_KEYS", fernet_key)
    settings = load_settings()
    assert settings.process_queue == "filespin-asset-post-process"
    assert settings.trigger_queue == "taskq_filespin-trigger-addon.service"
    assert settings.effective_broker_url == settings.redis_url == settings.effective_cache_url
    assert settings.fernet_keys == [fernet_key]


def test_broker_and_cache_urls_override_the_redis_url(monkeypatch: pytest.MonkeyPatch, fernet_key: str) -> None:
    monkeypatch.setenv("POSTPROCESS_APIKEY_KEYS", fernet_key)
    monkeypatch.setenv("POSTPROCESS_REDIS_URL", "redis://a:6379/0")
    monkeypatch.setenv("POSTPROCESS_BROKER_URL", "redis://b:6379/0")
    settings = load_settings()
    assert settings.effective_broker_url == "redis://b:6379/0"
    assert settings.effective_cache_url == "redis://a:6379/0"


def test_missing_keys_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="POSTPROCESS_APIKEY_KEYS: is required"):
        load_settings()


def test_a_bad_key_names_the_variable_and_never_echoes_it(monkeypatch: pytest.MonkeyPatch, fernet_key: str) -> None:
    monkeypatch.setenv("POSTPROCESS_APIKEY_KEYS", f"{fernet_key},not-a-key-but-secret-text")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "POSTPROCESS_APIKEY_KEYS" in str(caught.value)
    assert "key #2" in str(caught.value)
    assert "not-a-key-but-secret-text" not in str(caught.value)
    assert fernet_key not in str(caught.value)


def test_keys_are_read_newest_first_from_a_list(monkeypatch: pytest.MonkeyPatch, fernet_key: str) -> None:
    from cryptography.fernet import Fernet

    older = Fernet.generate_key().decode()
    monkeypatch.setenv("POSTPROCESS_APIKEY_KEYS", f" {fernet_key} , {older} ")
    assert load_settings().fernet_keys == [fernet_key, older]


def test_file_variant_reads_a_docker_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fernet_key: str) -> None:
    secret = tmp_path / "keys"
    secret.write_text(fernet_key + "\n")
    monkeypatch.setenv("POSTPROCESS_APIKEY_KEYS_FILE", str(secret))
    monkeypatch.setenv("POSTPROCESS_LOG_LEVEL_FILE", str(tmp_path / "level"))
    (tmp_path / "level").write_text("debug")
    settings = load_settings()
    assert settings.fernet_keys == [fernet_key]
    assert settings.log_level == "DEBUG"


def test_file_variant_and_plain_variable_together_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fernet_key: str
) -> None:
    (tmp_path / "k").write_text(fernet_key)
    monkeypatch.setenv("POSTPROCESS_APIKEY_KEYS_FILE", str(tmp_path / "k"))
    monkeypatch.setenv("POSTPROCESS_APIKEY_KEYS", fernet_key)
    with pytest.raises(ConfigurationError, match="both set"):
        load_settings()


def test_unreadable_secret_file_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("POSTPROCESS_APIKEY_KEYS_FILE", str(tmp_path / "absent"))
    with pytest.raises(ConfigurationError, match="POSTPROCESS_APIKEY_KEYS_FILE: cannot read"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("POSTPROCESS_ADDON_URLS", "{not json", "POSTPROCESS_ADDON_URLS"),
        ("POSTPROCESS_ADDON_URLS", '{"FACE_RECOGNITION": "ftp://x"}', "POSTPROCESS_ADDON_URLS"),
        ("POSTPROCESS_REDIS_URL", "http://localhost", "POSTPROCESS_REDIS_URL"),
        ("POSTPROCESS_FILESPIN_API_URL", "localhost:8000", "POSTPROCESS_FILESPIN_API_URL"),
        ("POSTPROCESS_LOG_LEVEL", "LOUD", "POSTPROCESS_LOG_LEVEL"),
        ("POSTPROCESS_TRIGGER_CONCURRENCY", "0", "POSTPROCESS_TRIGGER_CONCURRENCY"),
        ("POSTPROCESS_TRIGGER_POOL", "fibers", "POSTPROCESS_TRIGGER_POOL"),
    ],
)
def test_bad_values_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, fernet_key: str, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv("POSTPROCESS_APIKEY_KEYS", fernet_key)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=expected):
        load_settings()


def test_addon_urls_are_a_json_map(monkeypatch: pytest.MonkeyPatch, fernet_key: str) -> None:
    monkeypatch.setenv("POSTPROCESS_APIKEY_KEYS", fernet_key)
    monkeypatch.setenv("POSTPROCESS_ADDON_URLS", '{"EMOTION_RECOGNITION": "http://emotion:9000/"}')
    assert load_settings().addon_urls == {"EMOTION_RECOGNITION": "http://emotion:9000"}


def test_secrets_are_masked_in_dumps(monkeypatch: pytest.MonkeyPatch, fernet_key: str) -> None:
    from asset_post_process.common.settings import dumps_public

    monkeypatch.setenv("POSTPROCESS_APIKEY_KEYS", fernet_key)
    monkeypatch.setenv("POSTPROCESS_OPERATOR_TOKEN", "operator-secret-token")
    settings = load_settings()
    text = dumps_public(settings) + repr(settings)
    assert fernet_key not in text
    assert "operator-secret-token" not in text
