"""The health API's ASGI app: ``gunicorn -c python:asset_post_process.health_api.gunicorn_conf
asset_post_process.health_api.app:app``.

Routes: ``/livez``, ``/healthcheck``, ``/readyz``, ``/metrics``, ``/queues``, ``/dead-letters`` (list, show,
replay, purge; the last three need the operator token). Any Redis or broker failure answers 503, never 500.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from asset_post_process.health_api.__about__ import __version__
from asset_post_process.health_api.health_routes import router as health_router
from asset_post_process.health_api.operations_routes import router as operations_router
from asset_post_process.health_api.resources import Resources
from asset_post_process.health_api.settings import HealthSettings, get_health_settings

log = logging.getLogger(__name__)

DESCRIPTION = """\
Health, figures and dead letters of asset-post-process.

* `/healthcheck` (and `/readyz`): 200 when Redis answers and each worker kind (process, trigger) has a fresh
  heartbeat, else 503 naming the failed checks. `/livez`: the process answers.
* `/metrics`: Prometheus text format, cluster-wide (read from Redis, so every replica reports the same).
* `/queues`, `/dead-letters`: JSON figures. Showing, replaying and purging dead letters need
  `Authorization: Bearer <POSTPROCESS_OPERATOR_TOKEN>`; with no token configured those routes answer 404.
"""


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("dependency unavailable on %s: %s", request.url.path, type(exc).__name__)
    return JSONResponse({"detail": f"Redis or the broker did not answer ({type(exc).__name__})"}, status_code=503)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's handler, except that a 405 lists the methods of every route on the path, not the first."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        allowed = sorted(
            {
                method
                for route in request.app.routes
                if isinstance(route, Route) and route.path_regex.match(request.url.path)
                for method in route.methods or ()
            }
        )
        exc = StarletteHTTPException(exc.status_code, exc.detail, {**(exc.headers or {}), "Allow": ", ".join(allowed)})
    return await http_exception_handler(request, exc)


def create_app(settings: HealthSettings | None = None) -> FastAPI:
    """The app; with ``settings`` its clients are built at once, else by the lifespan from the environment."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if getattr(app.state, "resources", None) is None:
            app.state.resources = Resources.from_settings(get_health_settings())
        try:
            yield
        finally:
            resources: Resources = app.state.resources
            await resources.aclose()

    app = FastAPI(
        title="asset-post-process health API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.resources = Resources.from_settings(settings) if settings is not None else None
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RedisError, _unavailable)
    app.add_exception_handler(OperationalError, _unavailable)
    app.add_exception_handler(TimeoutError, _unavailable)
    app.include_router(health_router)
    app.include_router(operations_router)
    return app


app = create_app()
