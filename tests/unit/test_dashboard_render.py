"""Pure parts of the dashboard: SVG charts and latency percentiles from Prometheus histograms."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest
from prometheus_client import CollectorRegistry, Histogram

from nearrec.api.dashboard.charts import bar_chart, grouped_bars
from nearrec.api.dashboard.latency import histogram_rows, quantile


def test_bar_chart_is_valid_svg_with_one_bar_per_point_scaled_to_the_maximum() -> None:
    svg = str(bar_chart([("2024-01-01", 2.0), ("2024-01-02", 8.0), ("<b>", 0.0)], title="per day"))
    root = ET.fromstring(svg)  # well-formed
    heights = [float(r.get("height", "0")) for r in root.iter("rect")]
    assert len(heights) == 3
    assert heights[1] == pytest.approx(4 * heights[0]) and heights[2] == 0
    assert "<b>" not in svg and "&lt;b&gt;" in svg  # labels are escaped
    assert ET.fromstring(str(bar_chart([], title="empty"))).tag == "svg"


def test_grouped_bars_has_a_bar_per_series_and_group() -> None:
    svg = str(grouped_bars(["ndcg", "recall"], [("text", [0.1, 0.2]), ("cf", [0.3, 0.4])], title="t"))
    root = ET.fromstring(svg)
    bars = [r for r in root.iter("rect") if r.find("title") is not None]
    assert len(bars) == 4
    assert {re.sub(r":.*", "", b.findtext("title") or "") for b in bars} == {
        "text ndcg", "text recall", "cf ndcg", "cf recall"
    }  # fmt: skip


def test_quantile_interpolates_inside_the_bucket() -> None:
    buckets = [(0.01, 50.0), (0.02, 100.0), (math.inf, 100.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.01)
    assert quantile(0.75, buckets) == pytest.approx(0.015)
    assert quantile(0.25, buckets) == pytest.approx(0.005)
    assert math.isnan(quantile(0.5, [(math.inf, 0.0)]))
    assert quantile(0.99, [(0.01, 1.0), (math.inf, 10.0)]) == 0.01  # beyond the last bound


def test_histogram_rows_per_label_skip_and_mean() -> None:
    registry = CollectorRegistry()
    h = Histogram("lat", "latency", ["route"], buckets=(0.001, 0.01, 0.1), registry=registry)
    for _ in range(9):
        h.labels("/v1/a").observe(0.005)
    h.labels("/v1/a").observe(0.05)
    h.labels("/dashboard/users/{user_id}").observe(0.2)
    h.labels("unmatched").observe(0.2)
    rows = histogram_rows(h, "route", skip=("/dashboard", "unmatched"))
    assert [r.label for r in rows] == ["/v1/a"]
    row = rows[0]
    assert row.count == 10 and row.mean_ms == pytest.approx(9.5)
    assert 1.0 < row.p50_ms < 10.0 and 10.0 < row.p99_ms <= 100.0
