"""The health API's ASGI app: ``gunicorn -c gunicorn.conf.py asset_post_process.health_api.app:app``."""

from __future__ import annotations

from fastapi import FastAPI

from asset_post_process.health_api.__about__ import __version__

app = FastAPI(title="asset-post-process health API", version=__version__)


@app.get("/livez")
async def livez() -> dict[str, str]:
    """The process is up; no dependency is checked."""
    return {"status": "ok"}
