"""The health API against the running service: /healthcheck follows the workers' heartbeats, /metrics and /queues
report what the workers did (cluster-wide figures read from Redis)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from asset_post_process.common.producer import EventProducer
from asset_post_process.devkit import factory
from asset_post_process.devkit.launcher import ServiceStack
from asset_post_process.devkit.simulator import SimulatorClient

SCENE = "SCENE_CLASSIFICATION"


def health(stack: ServiceStack) -> httpx.Response:
    return httpx.get(f"{stack.api_url}/healthcheck", timeout=5)


def test_healthcheck_is_200_with_both_workers_and_503_within_the_ttl_after_one_is_killed(
    stack_factory: Callable[..., ServiceStack], wait_until: Callable[..., Any]
) -> None:
    stack = stack_factory(with_api=True)
    ttl = stack.settings.heartbeat_ttl_seconds
    healthy = wait_until(lambda: (r := health(stack)).status_code == 200 and r, timeout=30, message="/healthcheck 200")
    assert healthy.json()["failed"] == []
    assert healthy.json()["checks"]["workers.trigger"]["live"] == 1

    stack.trigger_worker.kill()  # SIGKILL: no goodbye, its heartbeat just stops being renewed
    # Bounded by the TTL plus the time for the last beat to age and one poll: never longer.
    down = wait_until(
        lambda: (r := health(stack)).status_code == 503 and r,
        timeout=ttl + 2,
        interval=0.2,
        message=lambda: f"/healthcheck 503 within {ttl}s of the kill",
    )
    body = down.json()
    assert body["status"] == "unhealthy"
    assert body["failed"] == ["workers.trigger"]
    assert body["checks"]["workers.process"]["ok"] is True
    assert httpx.get(f"{stack.api_url}/livez", timeout=5).status_code == 200


def test_healthcheck_is_503_at_once_after_a_graceful_worker_stop(
    stack_factory: Callable[..., ServiceStack], wait_until: Callable[..., Any]
) -> None:
    stack = stack_factory(with_api=True)
    wait_until(lambda: health(stack).status_code == 200, timeout=30, message="/healthcheck 200")
    stack.process_worker.stop()  # warm shutdown: the worker removes its own heartbeat
    response = health(stack)
    assert response.status_code == 503
    assert response.json()["failed"] == ["workers.process"]


def test_metrics_and_queues_report_what_the_workers_did(
    service: ServiceStack,
    producer: EventProducer,
    sim: SimulatorClient,
    new_account: Callable[..., factory.Account],
    wait_until: Callable[..., Any],
) -> None:
    asset = factory.image_asset()
    account = new_account(factory.all_builtin_addons(events=["file-saved"], content_types=["image/*"]), [asset])
    producer.enqueue_asset_event(apikey=account.apikey, asset_id=asset["id"], event_type="file-saved", addons=[SCENE])

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"{service.api_url}/metrics", timeout=5).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    done_key = ("postprocess_addon_outcomes_total", (("addon", SCENE), ("outcome", "done")))
    samples = wait_until(lambda: (m := scrape()).get(done_key, 0) >= 1 and m, timeout=30, message="scene done")
    assert samples[("postprocess_addon_call_duration_seconds_count", (("addon", SCENE),))] >= 1
    assert samples[("postprocess_workers_live", (("kind", "process"),))] >= 1
    assert samples[("postprocess_workers_live", (("kind", "trigger"),))] >= 1
    assert ("postprocess_queue_depth", (("queue", service.settings.process_queue),)) in samples
    assert ("postprocess_dead_letters", ()) in samples

    queues = httpx.get(f"{service.api_url}/queues", timeout=5).json()
    assert set(queues["queues"]) == {service.settings.process_queue, service.settings.trigger_queue}
    assert queues["workers"]["process"] == [service.process_worker.node]
    assert queues["workers"]["trigger"] == [service.trigger_worker.node]
    assert queues["outcomes"][SCENE]["done"] >= 1
