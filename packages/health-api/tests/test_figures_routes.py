"""/metrics (parsed with prometheus-client's own parser) and /queues, from figures the workers keep in Redis."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from asset_post_process.common.deadletters import DeadLetter, DeadLetterStore
from asset_post_process.common.delayed import DelayedQueue
from asset_post_process.common.figures import queue_lists
from asset_post_process.common.heartbeat import Heartbeat
from asset_post_process.common.keys import Keys
from asset_post_process.common.metrics import Metrics
from asset_post_process.health_api.settings import HealthSettings

from .conftest import _client

pytestmark = pytest.mark.anyio


def populate(rds: redis.Redis[bytes], keys: Keys, settings: HealthSettings) -> None:
    """Three waiting process messages (one at a higher priority), one trigger message, one dead letter, two
    delayed retries (one due), a process worker, outcomes and latency of one addon."""
    process_lists = queue_lists(settings.process_queue)
    rds.rpush(process_lists[0], b"m1", b"m2")
    rds.rpush(process_lists[2], b"m3")
    rds.rpush(settings.trigger_queue, b"t1")
    DeadLetterStore(rds, keys).add(
        DeadLetter(task="trigger_addon", queue=settings.trigger_queue, message={}, reason_code="http_403", reason="x")
    )
    delayed = DelayedQueue(rds, keys)
    delayed.schedule("trigger_addon", settings.trigger_queue, {}, 1, delay_seconds=0)
    delayed.schedule("trigger_addon", settings.trigger_queue, {}, 1, delay_seconds=3600)
    Heartbeat(rds, keys, "process", "process@a", 30).beat()
    metrics = Metrics(rds, keys)
    metrics.count_outcome("FACE_RECOGNITION", "done", 5)
    metrics.count_outcome("FACE_RECOGNITION", "retried", 2)
    metrics.observe_latency("FACE_RECOGNITION", 0.02)
    metrics.observe_latency("FACE_RECOGNITION", 0.3)
    metrics.observe_latency("FACE_RECOGNITION", 99.0)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_parse_and_report_the_cluster_figures(
    api: httpx.AsyncClient, rds: redis.Redis[bytes], keys: Keys, settings: HealthSettings
) -> None:
    populate(rds, keys, settings)
    response = await api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    got = samples(response.text)
    assert got[("postprocess_queue_depth", (("queue", settings.process_queue),))] == 3
    assert got[("postprocess_queue_depth", (("queue", settings.trigger_queue),))] == 1
    assert got[("postprocess_dead_letters", ())] == 1
    assert got[("postprocess_delayed_retries", ())] == 2
    assert got[("postprocess_delayed_retries_due", ())] == 1
    assert got[("postprocess_workers_live", (("kind", "process"),))] == 1
    assert got[("postprocess_workers_live", (("kind", "trigger"),))] == 0
    face = ("addon", "FACE_RECOGNITION")
    assert got[("postprocess_addon_outcomes_total", (face, ("outcome", "done")))] == 5
    assert got[("postprocess_addon_outcomes_total", (face, ("outcome", "retried")))] == 2
    assert got[("postprocess_addon_outcomes_total", (face, ("outcome", "dead_lettered")))] == 0
    histogram = "postprocess_addon_call_duration_seconds"
    assert got[(f"{histogram}_bucket", (face, ("le", "0.025")))] == 1
    assert got[(f"{histogram}_bucket", (face, ("le", "0.5")))] == 2
    assert got[(f"{histogram}_bucket", (face, ("le", "30.0")))] == 2
    assert got[(f"{histogram}_bucket", (face, ("le", "+Inf")))] == 3
    assert got[(f"{histogram}_count", (face,))] == 3
    assert got[(f"{histogram}_sum", (face,))] == pytest.approx(99.32)


async def test_two_replicas_report_the_same_figures(
    api: httpx.AsyncClient, rds: redis.Redis[bytes], keys: Keys, settings: HealthSettings
) -> None:
    populate(rds, keys, settings)
    first = (await api.get("/metrics")).text
    async for other in _client(settings):
        assert (await other.get("/metrics")).text == first


async def test_queues_as_json(
    api: httpx.AsyncClient, rds: redis.Redis[bytes], keys: Keys, settings: HealthSettings
) -> None:
    populate(rds, keys, settings)
    response = await api.get("/queues")
    assert response.status_code == 200
    assert response.json() == {
        "queues": {settings.process_queue: 3, settings.trigger_queue: 1},
        "unacked": response.json()["unacked"],  # kombu's global hash: other tests' brokers may share it
        "delayed": {"total": 2, "due": 1},
        "dead_letters": 1,
        "workers": {"process": ["process@a"], "trigger": []},
        "outcomes": {"FACE_RECOGNITION": {"done": 5, "retried": 2}},
    }


@pytest.mark.parametrize("path", ["/metrics", "/queues", "/dead-letters"])
async def test_redis_down_is_503_not_500(
    make_settings: Callable[..., HealthSettings], down_url: str, path: str
) -> None:
    async for client in _client(make_settings(redis_url=down_url)):
        response = await client.get(path)
        assert response.status_code == 503
        assert "did not answer" in response.json()["detail"]
