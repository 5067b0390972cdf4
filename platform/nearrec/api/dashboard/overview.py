"""The Overview and Evaluation pages' data: counts, activity, sync state, collections, model, latency, the
last evaluation report."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from nearrec.api.dashboard import charts
from nearrec.api.dashboard.latency import LatencyRow, histogram_rows
from nearrec.errors import NearrecError
from nearrec.evaluation.last import last_report_path, load_last
from nearrec.filters import Eq
from nearrec.model.cf import META_CF
from nearrec.postgres import dashboard_repo as repo
from nearrec.query.cache import Refreshing
from nearrec.sync import last_check
from nearrec.vectors.base import VectorStore
from nearrec.vectors.payload import ACTIVE, META_MODEL

if TYPE_CHECKING:
    from nearrec.api.deps import State

log = logging.getLogger(__name__)
STATS_TTL = 30.0
"""Seconds the :class:`Stats` may be old (counting scans the interactions table and the collections)."""
ACTIVITY_DAYS = 60
DEFAULT_FAMILY = "low-rank ridge item-item (cf), served through the 'cf' named vectors"


@dataclass
class CollectionInfo:
    alias: str
    exists: bool
    physical: str | None = None
    points: int = 0
    active: int | None = None
    model: str | None = None
    vectors: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Stats:
    """What takes scans to find: table counts, activity, the collections' sizes, the items metadata."""

    counts: repo.Counts
    per_day: list[tuple[date, int]]
    collections: list[CollectionInfo]
    metadata: dict[str, Any]
    vectors_error: str | None


class StatsCache:
    """One per app: :class:`Stats`, refreshed in the background (see :class:`Refreshing`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: Refreshing[Stats] | None = None

    def get(self, s: State) -> Stats:
        with self._lock:
            if self._cache is None:
                self._cache = Refreshing(lambda: load_stats(s), STATS_TTL)
            cache = self._cache
        return cache.get()

    def cached(self) -> Stats | None:
        """The stats loaded so far, without loading them (None before the first load)."""
        with self._lock:
            cache = self._cache
        return None if cache is None else cache.cached()

    def warm(self, s: State) -> threading.Thread:
        """Fill the cache in a background thread (at server start), so the first overview does not wait for
        the table scans (seconds on a catalog of millions of interactions)."""

        def fill() -> None:
            try:
                self.get(s)
            except Exception as exc:  # noqa: BLE001 - the first request loads it again and reports
                log.info("dashboard stats not warmed: %s", exc)

        thread = threading.Thread(target=fill, name="nearrec-dashboard-warm", daemon=True)
        thread.start()
        return thread


def load_stats(s: State) -> Stats:
    with s.runtime.read_sessions() as session:
        counts = repo.counts(session)
        per_day = repo.interactions_per_day(session, ACTIVITY_DAYS)
    store, items = s.runtime.vector_store, s.settings.items_collection
    try:
        infos = collections(store, (items, s.settings.users_collection))
        metadata = store.get_metadata(items) if infos[0].exists else {}
    except NearrecError as exc:
        return Stats(counts, per_day, [], {}, str(exc))
    return Stats(counts, per_day, infos, metadata, None)


@dataclass
class Overview:
    stats: Stats
    activity: Markup
    backlog: repo.Backlog
    last_check: dict[str, Any] | None
    model: dict[str, Any] | None
    family: str
    tuning: list[dict[str, Any]]
    queries: list[LatencyRow]
    routes: list[LatencyRow]


def collections(store: VectorStore, aliases: tuple[str, str]) -> list[CollectionInfo]:
    out = []
    for n, alias in enumerate(aliases):
        if not store.collection_exists(alias):
            out.append(CollectionInfo(alias, exists=False))
            continue
        out.append(
            CollectionInfo(
                alias,
                exists=True,
                physical=store.resolve_alias(alias) or alias,
                points=store.count(alias),
                active=store.count(alias, Eq(ACTIVE, 1)) if n == 0 else None,
                model=store.get_metadata(alias).get(META_MODEL),
                vectors=store.vector_sizes(alias),
            )
        )
    return out


def overview(s: State, cache: StatsCache) -> Overview:
    stats = cache.get(s)
    with s.runtime.read_sessions() as session:
        backlog = repo.backlog(session)
    metadata = stats.metadata
    model = metadata.get(META_CF) if isinstance(metadata.get(META_CF), dict) else None
    tuning = model.get("tuning") if model else None
    points = [(d.isoformat(), float(n)) for d, n in stats.per_day]
    title = f"interactions per day, the last {ACTIVITY_DAYS} days of activity"
    return Overview(
        stats=stats,
        activity=charts.bar_chart(points, title=title),
        backlog=backlog,
        last_check=last_check.last(metadata),
        model=model,
        family=str(model.get("family", DEFAULT_FAMILY)) if model else DEFAULT_FAMILY,
        tuning=[row for row in tuning if isinstance(row, dict)] if isinstance(tuning, list) else [],
        queries=histogram_rows(s.metrics.query_seconds, "operation"),
        routes=histogram_rows(s.metrics.request_seconds, "route", skip=("/dashboard", "unmatched")),
    )


MODEL_FIELDS = (
    "rank", "dim", "regularization", "half_life", "non_positive_weight", "scale",
    "interactions", "items", "users",
)  # fmt: skip


@dataclass
class Evaluation:
    path: str
    report: dict[str, Any] | None
    metrics: list[str]
    chart: Markup | None


def metric_order(methods: dict[str, dict[str, float]]) -> list[str]:
    """The metric columns of a report (as the CLI table shows them): ms_per_query last."""
    first = next(iter(methods.values()), {})
    names = [n for n in first if n != "ms_per_query"]
    return names + (["ms_per_query"] if "ms_per_query" in first else [])


def evaluation(s: State) -> Evaluation:
    report = load_last(s.settings.data_dir)
    path = str(last_report_path(s.settings.data_dir))
    if report is None:
        return Evaluation(path, None, [], None)
    methods: dict[str, dict[str, float]] = report["methods"]
    names = metric_order(methods)
    shown = [n for n in names if n != "ms_per_query"]
    series = [(m, [float(v.get(n, 0.0)) for n in shown]) for m, v in methods.items()]
    dataset = report.get("dataset", {})
    title = f"nearrec evaluate: {dataset.get('test_users', '?')} test users, k={dataset.get('k', '?')}"
    return Evaluation(path, report, names, charts.grouped_bars(shown, series, title=title))
