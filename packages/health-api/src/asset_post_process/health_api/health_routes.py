"""Routes for Docker Swarm and Prometheus: ``/livez``, ``/healthcheck``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from prometheus_client import CONTENT_TYPE_LATEST

from asset_post_process.common.figures import aread_figures
from asset_post_process.health_api.checks import run_checks
from asset_post_process.health_api.models import CheckResult, HealthReport, Liveness, Problem
from asset_post_process.health_api.prometheus import render
from asset_post_process.health_api.resources import Resources, get_resources

router = APIRouter(tags=["health"])

ResourcesDep = Annotated[Resources, Depends(get_resources)]


@router.get("/livez", response_model=Liveness, summary="The process answers (no dependency is checked)")
async def livez() -> Liveness:
    """200 as long as this API process serves requests."""
    return Liveness()


async def _health(resources: ResourcesDep, response: Response) -> HealthReport:
    settings = resources.settings
    checks = await run_checks(
        resources.store,
        resources.keys,
        settings.heartbeat_ttl_seconds,
        timeout=max(1.0, 2 * settings.health_redis_timeout),
    )
    failed = [c.name for c in checks if not c.ok]
    if failed:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return HealthReport(
        status="unhealthy" if failed else "ok",
        failed=failed,
        checks={c.name: CheckResult(ok=c.ok, detail=c.detail, live=c.live) for c in checks},
    )


_HEALTH_RESPONSES: dict[int | str, dict[str, object]] = {
    503: {"model": HealthReport, "description": "A check failed; `failed` names it."}
}


@router.get(
    "/healthcheck",
    response_model=HealthReport,
    responses=_HEALTH_RESPONSES,
    summary="200 when Redis answers and every worker kind has a fresh heartbeat, else 503",
)
async def healthcheck(resources: ResourcesDep, response: Response) -> HealthReport:
    """What Docker Swarm calls: one pipelined Redis round trip with short timeouts."""
    return await _health(resources, response)


@router.get("/readyz", response_model=HealthReport, responses=_HEALTH_RESPONSES, summary="Same checks as /healthcheck")
async def readyz(resources: ResourcesDep, response: Response) -> HealthReport:
    """Ready to be relied on: the same checks as ``/healthcheck``."""
    return await _health(resources, response)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format."},
        503: {"model": Problem, "description": "Redis did not answer."},
    },
    summary="Cluster-wide figures in the Prometheus text format",
)
async def metrics(resources: ResourcesDep) -> Response:
    """Queue depths, delayed retries, dead letters, live workers, addon outcomes and call latency."""
    settings = resources.settings
    figures = await aread_figures(
        resources.store,
        resources.keys,
        resources.queues,
        settings.heartbeat_ttl_seconds,
        broker=resources.broker,
    )
    return Response(render(figures), media_type=CONTENT_TYPE_LATEST)
