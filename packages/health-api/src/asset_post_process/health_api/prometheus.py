"""``/metrics``: the cluster-wide figures in the Prometheus text format, from a fresh registry per scrape.

Everything comes from Redis (see ``common.figures``), so every API replica serves the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from asset_post_process.common.figures import Figures
from asset_post_process.common.metrics import OUTCOMES


class FiguresCollector(Collector):
    """Yields the metric families of one :class:`Figures` snapshot."""

    def __init__(self, figures: Figures) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        """The metric families."""
        f = self._figures
        depth = GaugeMetricFamily("postprocess_queue_depth", "Messages waiting in a queue.", labels=["queue"])
        for queue, count in f.queues.items():
            depth.add_metric([queue], count)
        yield depth
        yield GaugeMetricFamily(
            "postprocess_messages_unacked", "Messages delivered to a worker and not yet acknowledged.", value=f.unacked
        )
        yield GaugeMetricFamily("postprocess_delayed_retries", "Messages waiting for a retry.", value=f.delayed)
        yield GaugeMetricFamily(
            "postprocess_delayed_retries_due", "Retries already due (growing: the pumps lag).", value=f.delayed_due
        )
        yield GaugeMetricFamily("postprocess_dead_letters", "Messages in the dead-letter store.", value=f.dead_letters)
        workers = GaugeMetricFamily(
            "postprocess_workers_live", "Worker nodes with a fresh heartbeat, per kind.", labels=["kind"]
        )
        for kind, nodes in f.workers.items():
            workers.add_metric([kind], len(nodes))
        yield workers
        outcomes = CounterMetricFamily(
            "postprocess_addon_outcomes", "Addon jobs by final or interim outcome.", labels=["addon", "outcome"]
        )
        for addon in f.addons:
            for outcome in OUTCOMES:
                outcomes.add_metric([addon, outcome], f.outcomes.get((addon, outcome), 0))
        for (addon, outcome), count in sorted(f.outcomes.items()):
            if outcome not in OUTCOMES:
                outcomes.add_metric([addon, outcome], count)
        yield outcomes
        latency = HistogramMetricFamily(
            "postprocess_addon_call_duration_seconds", "Duration of addon API calls.", labels=["addon"]
        )
        for addon, histogram in sorted(f.latency.items()):
            buckets = [(floatToGoString(b), n) for b, n in histogram.buckets.items()]  # type: ignore[no-untyped-call]
            buckets.append(("+Inf", histogram.count))
            latency.add_metric([addon], buckets, sum_value=histogram.total_seconds)
        yield latency


def render(figures: Figures) -> bytes:
    """The Prometheus text exposition of ``figures``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FiguresCollector(figures))
    return generate_latest(registry)
