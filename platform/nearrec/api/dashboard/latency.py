"""Latency percentiles read from this process's Prometheus histograms (as ``histogram_quantile`` would:
linear interpolation inside the bucket that holds the rank, so a figure is only as fine as the buckets)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import Histogram


@dataclass(frozen=True, slots=True)
class LatencyRow:
    label: str
    count: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """``q`` in [0, 1] from cumulative ``(upper bound, count)`` buckets sorted by bound, the last one +Inf.
    The +Inf bucket has no upper bound: a rank that falls there reports the largest finite bound."""
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def histogram_rows(histogram: Histogram, label: str, skip: Sequence[str] = ()) -> list[LatencyRow]:
    """One row per value of ``label`` that has observations, except the values in ``skip`` or starting with
    ``<one of skip>/`` (e.g. the dashboard's own routes)."""
    buckets: dict[str, dict[float, float]] = {}
    sums: dict[str, float] = {}
    for metric in histogram.collect():
        for sample in metric.samples:
            key = sample.labels.get(label, "")
            if any(key == p or key.startswith(p + "/") for p in skip):
                continue
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                into = buckets.setdefault(key, {})
                into[bound] = into.get(bound, 0.0) + sample.value  # summed over the other labels
            elif sample.name.endswith("_sum"):
                sums[key] = sums.get(key, 0.0) + sample.value
    rows = []
    for key in sorted(buckets):
        ordered = sorted(buckets[key].items())
        count = int(ordered[-1][1])
        if count == 0:
            continue
        rows.append(
            LatencyRow(
                key,
                count,
                1000 * sums.get(key, 0.0) / count,
                1000 * quantile(0.5, ordered),
                1000 * quantile(0.95, ordered),
                1000 * quantile(0.99, ordered),
            )
        )
    return rows
