"""What the web process's /metrics adds to its own counters: queue depth gauges.

They are read from PostgreSQL at scrape time by a collector on a registry of this app's
own, so several apps in one process (tests) never register twice.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from state.stats import queue_stats


class QueueDepthCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        stats = queue_stats(self._engine)
        yield GaugeMetricFamily(
            "turnstile_inbox_pending_messages",
            "Accepted messages whose turn has not finished, all conversations.",
            value=stats.messages_pending,
        )
        yield GaugeMetricFamily(
            "turnstile_conversations_pending",
            "Conversations with at least one pending message.",
            value=stats.conversations_pending,
        )
        yield GaugeMetricFamily(
            "turnstile_outbox_pending_replies",
            "Replies not yet delivered (including those waiting for a retry).",
            value=stats.replies_pending,
        )


def render_metrics(own: CollectorRegistry) -> bytes:
    return generate_latest(REGISTRY) + generate_latest(own)


def depth_registry(engine: Engine) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueDepthCollector(engine))
    return registry
