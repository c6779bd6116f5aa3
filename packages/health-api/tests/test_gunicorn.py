"""The health API under Gunicorn with its shipped configuration: found by module and by the repository shim."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from asset_post_process.health_api.settings import HealthSettings

from .live import running_api

SHIM = Path(__file__).resolve().parents[1] / "gunicorn.conf.py"


def env_of(settings: HealthSettings) -> dict[str, str]:
    assert settings.operator_token is not None
    return {
        "POSTPROCESS_REDIS_URL": settings.redis_url,
        "POSTPROCESS_KEY_PREFIX": settings.key_prefix,
        "POSTPROCESS_PROCESS_QUEUE": settings.process_queue,
        "POSTPROCESS_TRIGGER_QUEUE": settings.trigger_queue,
        "POSTPROCESS_OPERATOR_TOKEN": settings.operator_token.get_secret_value(),
    }


@pytest.mark.parametrize("config", ["python:asset_post_process.health_api.gunicorn_conf", str(SHIM)])
def test_gunicorn_serves_the_app_with_json_access_logs(settings: HealthSettings, tmp_path: Path, config: str) -> None:
    with running_api(env_of(settings), tmp_path, config=config) as base_url:
        response = httpx.get(f"{base_url}/healthcheck", timeout=5)
        assert response.status_code == 503
        assert response.json()["failed"] == ["workers.process", "workers.trigger"]
    log = next(tmp_path.glob("gunicorn-*.log")).read_text()
    access = [json.loads(line) for line in log.splitlines() if '"logger": "access"' in line]
    assert {"method": "GET", "path": "/healthcheck", "status": 503}.items() <= access[-1].items()
    assert all(line.startswith("{") for line in log.splitlines() if line.strip())
