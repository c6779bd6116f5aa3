"""The health API's settings and the Gunicorn configuration built from them."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from asset_post_process.common.settings import ConfigurationError, env_name
from asset_post_process.health_api import gunicorn_conf
from asset_post_process.health_api.settings import HealthSettings, get_health_settings, load_health_settings

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in list(os.environ):
        if name.startswith("POSTPROCESS_"):
            monkeypatch.delenv(name)
    get_health_settings.cache_clear()
    yield monkeypatch
    get_health_settings.cache_clear()


def test_defaults_and_no_fernet_keys_needed(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_health_settings()
    assert settings.apikey_keys is None
    assert (settings.health_bind, settings.health_workers, settings.health_redis_timeout) == ("0.0.0.0:8000", 2, 0.5)
    with pytest.raises(ConfigurationError, match="POSTPROCESS_APIKEY_KEYS"):
        _ = settings.fernet_keys


def test_a_bad_value_names_its_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("POSTPROCESS_HEALTH_WORKERS", "0")
    with pytest.raises(ConfigurationError, match="POSTPROCESS_HEALTH_WORKERS"):
        load_health_settings()


def test_gunicorn_config_comes_from_the_settings(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("POSTPROCESS_HEALTH_BIND", "127.0.0.1:9123")
    clean_env.setenv("POSTPROCESS_HEALTH_WORKERS", "3")
    clean_env.setenv("POSTPROCESS_HEALTH_GRACEFUL_TIMEOUT", "7")
    clean_env.setenv("POSTPROCESS_HEALTH_ACCESS_LOG", "false")
    conf = importlib.reload(gunicorn_conf)
    assert conf.bind == ["127.0.0.1:9123"]
    assert (conf.workers, conf.graceful_timeout, conf.accesslog) == (3, 7, None)
    assert conf.worker_class == "uvicorn_worker.UvicornWorker"
    assert set(conf.__all__) <= set(vars(conf))


def test_readme_documents_every_health_setting() -> None:
    text = README.read_text(encoding="utf-8")
    own = [env_name(name) for name in HealthSettings.model_fields if name.startswith("health_")]
    assert own
    assert [name for name in own if f"`{name}`" not in text] == []
