"""Presenting an evaluation: a rich table, a JSON file and a PNG bar chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from nearrec.evaluation.pipeline import EvalReport

if TYPE_CHECKING:
    from rich.table import Table

OFFLINE = "offline "
SHOWN = ("ndcg", "recall", "hit_rate", "mrr", "coverage", "ild")


def metric_names(report: EvalReport) -> list[str]:
    """The metric columns, in display order (``ms_per_query`` last)."""
    first = next(iter(report.methods.values()), {})
    names = [m for prefix in SHOWN for m in first if m.split("@")[0] == prefix]
    return names + (["ms_per_query"] if "ms_per_query" in first else [])


def table(report: EvalReport) -> Table:
    from rich.table import Table

    names = metric_names(report)
    out = Table(title=f"{report.dataset['test_users']} test users, {report.dataset['split']} split")
    out.add_column("method")
    for name in names:
        out.add_column(name, justify="right")
    for method, values in report.methods.items():
        if not method.startswith(OFFLINE):
            out.add_row(method, *(_fmt(name, values[name]) for name in names))
    return out


def offline_table(report: EvalReport) -> Table | None:
    """The offline baselines (numpy, same split), or None when they were not computed."""
    from rich.table import Table

    rows = {m: v for m, v in report.methods.items() if m.startswith(OFFLINE)}
    if not rows:
        return None
    names = list(next(iter(rows.values())))
    out = Table(title="offline baselines (numpy, same split)")
    out.add_column("method")
    for name in names:
        out.add_column(name, justify="right")
    for method, values in rows.items():
        out.add_row(method, *(_fmt(name, values[name]) for name in names))
    return out


def backends_table(reports: dict[str, EvalReport]) -> Table:
    """NDCG@k of every method under each embedding backend, and its change against the first backend."""
    from rich.table import Table

    first_name, first = next(iter(reports.items()))
    metric = f"ndcg@{first.dataset['k']}"
    out = Table(title=f"{metric} by embedding backend (change against {first_name})")
    out.add_column("method")
    for name in reports:
        out.add_column(name, justify="right")
    for method, values in first.methods.items():
        base = values[metric]
        cells = []
        for report in reports.values():
            value = report.methods[method][metric]
            change = f" ({(value - base) / base:+.1%})" if report is not first and base > 0 else ""
            cells.append(f"{value:.4f}{change}")
        out.add_row(method, *cells)
    return out


def write_json(report: EvalReport, path: Path) -> None:
    path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")


def write_plot(report: EvalReport, path: Path) -> None:
    """Grouped bars: one group per metric (ms_per_query left out), one bar per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [n for n in metric_names(report) if n not in ("ms_per_query", "p50_ms")]
    methods = list(report.methods)
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(names)), 4.0))
    x = np.arange(len(names))
    for n, method in enumerate(methods):
        values = [report.methods[method].get(name, 0.0) for name in names]
        ax.bar(x + n * width - 0.4 + width / 2, values, width, label=method)
    ax.set_xticks(x, names)
    ax.set_ylabel("value")
    ax.set_title(f"nearrec evaluate: {report.dataset['test_users']} users, k={report.dataset['k']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(name: str, value: float) -> str:
    return f"{value:.1f}" if name == "ms_per_query" else f"{value:.4f}"
