"""Prometheus metrics, one registry per app (tests build several apps in one process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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
        self.synced = Counter(
            "nearrec_sync_entities",
            "Entities synced to the vector store by the in-process worker",
            ["entity"],
            registry=self.registry,
        )
        self.sync_failures = Counter(
            "nearrec_sync_failures", "Worker batches that failed", registry=self.registry
        )

    def watch_outbox(self, read: Callable[[], tuple[int, int, float]]) -> None:
        self.registry.register(OutboxCollector(read))
