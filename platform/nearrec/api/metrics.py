"""Prometheus metrics, one registry per app (tests build several apps in one process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from nearrec.sync.worker import BatchReport

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class OutboxCollector(Collector):
    """Reads the outbox backlog from Postgres at scrape time, so every replica reports the same truth."""

    def __init__(self, read: Callable[[], tuple[int, int, float]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            pending, failed, oldest = self._read()
        except Exception:
            return
        yield GaugeMetricFamily("nearrec_outbox_pending", "Outbox rows waiting for a worker", value=pending)
        yield GaugeMetricFamily(
            "nearrec_outbox_failed", "Outbox rows parked after repeated failures", value=failed
        )
        yield GaugeMetricFamily(
            "nearrec_outbox_oldest_age_seconds", "Age of the oldest pending outbox row", value=oldest
        )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "nearrec_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.query_seconds = Histogram(
            "nearrec_query_duration_seconds",
            "QueryService latency by operation",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ingested_rows = Counter(
            "nearrec_ingested_rows", "Rows written through the API", ["entity"], registry=self.registry
        )
        self.sync_rows = Counter(
            "nearrec_sync_outbox_rows",
            "Outbox rows handled by the sync worker",
            ["outcome"],
            registry=self.registry,
        )
        self.sync_vectors = Counter(
            "nearrec_sync_vectors",
            "Vectors written or removed by the sync worker",
            ["entity", "action"],
            registry=self.registry,
        )
        self.sync_batch_seconds = Histogram(
            "nearrec_sync_batch_duration_seconds",
            "Duration of one worker batch",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )

    def record_batch(self, batch: BatchReport) -> None:
        """Count one worker batch (sync throughput: rate() of these counters)."""
        self.sync_rows.labels("done").inc(batch.rows - batch.failed)
        self.sync_rows.labels("failed").inc(batch.failed)
        self.sync_rows.labels("deferred").inc(batch.deferred)
        self.sync_vectors.labels("item", "embedded").inc(batch.items.embedded)
        self.sync_vectors.labels("item", "rewritten").inc(batch.items.rewritten)
        self.sync_vectors.labels("item", "deleted").inc(batch.items.deleted)
        self.sync_vectors.labels("user", "computed").inc(batch.users.computed)
        self.sync_vectors.labels("user", "deleted").inc(batch.users.deleted)
        self.sync_batch_seconds.observe(batch.seconds)

    def watch_outbox(self, read: Callable[[], tuple[int, int, float]]) -> None:
        self.registry.register(OutboxCollector(read))
