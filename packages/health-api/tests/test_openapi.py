"""The committed OpenAPI schema is the one the app serves."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from asset_post_process.health_api.openapi import openapi_text

COMMITTED = Path(__file__).resolve().parents[1] / "openapi.json"
REGENERATE = "python -m asset_post_process.health_api.openapi > packages/health-api/openapi.json"


def test_committed_schema_matches_the_app() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == openapi_text(), f"the schema changed: run `{REGENERATE}`"


@pytest.mark.anyio
async def test_served_schema_is_the_committed_one(api: httpx.AsyncClient) -> None:
    response = await api.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == json.loads(COMMITTED.read_text(encoding="utf-8"))


def test_every_route_is_documented() -> None:
    paths = json.loads(COMMITTED.read_text(encoding="utf-8"))["paths"]
    assert set(paths) == {
        "/livez",
        "/healthcheck",
        "/readyz",
        "/metrics",
        "/queues",
        "/dead-letters",
        "/dead-letters/{letter_id}",
        "/dead-letters/replay",
    }
    assert set(paths["/dead-letters"]) == {"get", "delete"}
