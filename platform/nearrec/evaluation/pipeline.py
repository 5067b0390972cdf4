"""`nearrec evaluate`: offline evaluation through the real pipeline.

1. Read the interactions file and split it (:mod:`nearrec.evaluation.split`): temporal leave-last-positive-out,
   or random with a seed. Positives follow the product's rule (a rating >= ``rating_threshold``, or a type
   with a positive weight).
2. Create a scratch database on the configured Postgres server (the embedded one by default), migrate it,
   ingest the items (and users) files and the TRAINING interactions with the catalog ingestion service.
3. Sync them with the real outbox worker into scratch collections (prefix ``eval_<pid>_``; a temporary
   directory for the embedded store), then train the collaborative model (`nearrec train`).
4. Ask :class:`~nearrec.query.service.QueryService` for every test user's top k with each method, and
   score the lists (:mod:`nearrec.evaluation.metrics`). Every training interaction counts as seen, so the
   service's exclusion rule gives "candidates = every item the user has not seen".
5. Drop the scratch database and collections.

The popularity method is the service's cold-start list (``method="popular"``), with the popularity window
widened to cover the whole dataset (old public datasets are far outside the default 90 days).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import SecretStr

from nearrec.config import Settings
from nearrec.embedding import load_embedder
from nearrec.embedding.base import Embedder
from nearrec.errors import InputFileError, NotFoundError
from nearrec.evaluation import metrics
from nearrec.evaluation.split import LeaveOneOutSplit, random_leave_one_out, temporal_leave_one_out
from nearrec.ingest import loader, service
from nearrec.ingest.readers import BadRow, Row, open_reader
from nearrec.ingest.records import InteractionOptions, ItemOptions, RowError, UserOptions, parse_interaction
from nearrec.jobs.train import cf_values, train
from nearrec.model.cf import CFConfig
from nearrec.model.user_vector import UserVectorParams
from nearrec.postgres import scratch as db_scratch
from nearrec.postgres.engine import make_engine, resolve_database_url, session_factory, transaction
from nearrec.query.service import QueryService
from nearrec.sync.worker import SyncWorker
from nearrec.vectors.base import VectorStore

Progress = Callable[[str, int, int], None]
"""(stage, done, total)."""
METHODS: tuple[str, ...] = ("popularity", "text", "cf", "hybrid")
SERVICE_METHOD = {"popularity": "popular", "text": "text", "cf": "cf", "hybrid": "hybrid"}
INGEST_BATCH = 5000


@dataclass(frozen=True)
class EvalOptions:
    items: Path
    interactions: Path
    users: Path | None = None
    split: Literal["temporal", "random"] = "temporal"
    k: int = 10
    methods: tuple[str, ...] = METHODS
    seed: int = 0
    min_positives: int = 2
    list_columns: frozenset[str] = frozenset({"genres"})
    default_type: str = "rating"
    cf: CFConfig = field(default_factory=CFConfig)


@dataclass
class Interactions:
    """The interactions file as parallel arrays (integer codes for users and items) plus the raw rows."""

    rows: list[Row]
    user_codes: np.ndarray[Any, np.dtype[np.int64]]
    item_codes: np.ndarray[Any, np.dtype[np.int64]]
    users: list[str]
    items: list[str]
    positive: np.ndarray[Any, np.dtype[np.bool_]]
    timestamps: np.ndarray[Any, np.dtype[np.float64]] | None
    rejected: int = 0


@dataclass
class EvalReport:
    methods: dict[str, dict[str, float]]
    dataset: dict[str, Any]
    settings: dict[str, Any]
    timings: dict[str, float]
    ranked: dict[str, list[list[str]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "settings": self.settings,
            "methods": self.methods,
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
        }


def read_interactions(path: Path, options: InteractionOptions, params: UserVectorParams) -> Interactions:
    """Parse the interactions file (bad rows are counted and skipped)."""
    rows: list[Row] = []
    users: list[str] = []
    items: list[str] = []
    kinds: list[str] = []
    values: list[float] = []
    times: list[float | None] = []
    rejected = 0
    with open_reader(path) as reader:
        for line, raw in reader:
            if isinstance(raw, BadRow):
                rejected += 1
                continue
            try:
                record = parse_interaction(raw, options)
            except RowError:
                rejected += 1
                continue
            rows.append((line, raw))
            users.append(record.user_id)
            items.append(record.item_id)
            kinds.append(record.type)
            values.append(math.nan if record.value is None else record.value)
            times.append(record.timestamp)
    if not rows:
        raise InputFileError(str(path), "no valid interactions")
    user_names, user_codes = _codes(users)
    item_names, item_codes = _codes(items)
    positive = cf_values(kinds, values, params) > 0
    stamps = None if any(t is None for t in times) else np.asarray(times, dtype=np.float64)
    return Interactions(
        rows, user_codes, item_codes, user_names, item_names, positive, stamps, rejected,
    )  # fmt: skip


def _codes(ids: Sequence[str]) -> tuple[list[str], np.ndarray[Any, np.dtype[np.int64]]]:
    """Dense integer codes for external ids, in numeric order when every id is an integer (so "ties go to
    the larger item id" in the split means the numerically larger one), else in string order."""
    names = sorted(set(ids), key=int) if all(i.isascii() and i.isdigit() for i in ids) else sorted(set(ids))
    index = {name: n for n, name in enumerate(names)}
    return names, np.fromiter((index[i] for i in ids), dtype=np.int64, count=len(ids))


def split_interactions(data: Interactions, options: EvalOptions) -> LeaveOneOutSplit:
    if options.split == "temporal":
        if data.timestamps is None:
            raise InputFileError(
                str(options.interactions), "temporal split needs a timestamp on every row; use --split random"
            )
        return temporal_leave_one_out(
            data.user_codes, data.item_codes, data.timestamps, data.positive, options.min_positives
        )
    return random_leave_one_out(
        data.user_codes, data.item_codes, data.positive, options.seed, options.min_positives
    )


@contextmanager
def scratch_database(settings: Settings) -> Iterator[str]:
    """A new, migrated database on the configured server (embedded by default); dropped on exit."""
    with db_scratch.scratch_database(resolve_database_url(settings), f"nearrec_eval_{os.getpid()}") as url:
        yield url


@contextmanager
def scratch_store(settings: Settings) -> Iterator[tuple[VectorStore, Settings]]:
    """A vector store for scratch collections ``eval_<pid>_*`` and settings pointing at them."""
    tmp = Path(tempfile.mkdtemp(prefix="nearrec-eval-"))
    scratch = settings.model_copy(update={"collection_prefix": f"eval_{os.getpid()}_", "data_dir": tmp})
    store: VectorStore
    if settings.qdrant_url:
        from nearrec.vectors import open_vector_store

        store = open_vector_store(scratch)
    else:
        from nearrec.vectors.edge import EdgeVectorStore

        store = EdgeVectorStore(tmp / "vectors")
    try:
        yield store, scratch
    finally:
        try:
            for alias in (scratch.items_collection, scratch.users_collection):
                target = store.resolve_alias(alias)
                if target is not None:
                    store.delete_collection(target)
        finally:
            store.close()
            shutil.rmtree(tmp, ignore_errors=True)


def _step(progress: Progress | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)


def run_evaluation(
    settings: Settings,
    options: EvalOptions,
    *,
    embedder: Embedder | None = None,
    progress: Progress | None = None,
) -> EvalReport:
    """Run the whole evaluation (see the module docstring) and return the report."""
    unknown = [m for m in options.methods if m not in METHODS]
    if unknown or not options.methods:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    params = UserVectorParams.from_settings(settings)
    data = read_interactions(
        options.interactions, InteractionOptions(default_type=options.default_type), params
    )
    split = split_interactions(data, options)
    timings["read and split"] = time.perf_counter() - started
    model = embedder or load_embedder(settings)
    with scratch_database(settings) as url, scratch_store(settings) as (store, scratch):
        first = float(data.timestamps.min()) if data.timestamps is not None else time.time()
        window = max(1, math.ceil((time.time() - first) / 86400) + 1)
        scratch = scratch.model_copy(update={"database_url": SecretStr(url), "popular_window_days": window})
        engine = make_engine(url)
        try:
            sessions = session_factory(engine)
            mark = time.perf_counter()
            _ingest(engine, options, data, split, settings, progress)
            timings["ingest"] = time.perf_counter() - mark
            mark = time.perf_counter()
            _sync(sessions, store, model, scratch, progress)
            timings["sync (embed)"] = time.perf_counter() - mark
            if {"cf", "hybrid"} & set(options.methods):
                mark = time.perf_counter()
                train(sessions, store, scratch, options.cf, seed=options.seed, progress=progress)
                timings["train"] = time.perf_counter() - mark
            query = QueryService(sessions, store, scratch, embedder=lambda: model)
            results, ranked, per_method = _score(query, store, scratch, data, split, options, progress)
            timings.update(per_method)
        finally:
            engine.dispose()
    timings["total"] = time.perf_counter() - started
    dataset = {
        "items_file": str(options.items),
        "interactions_file": str(options.interactions),
        "interactions": len(data.rows),
        "rejected_rows": data.rejected,
        "users": len(data.users),
        "items_interacted": len(data.items),
        "training_interactions": int(split.train_mask.sum()),
        "test_users": split.n_test,
        "split": options.split,
        "seed": options.seed,
        "k": options.k,
    }
    used = {
        "embedding_model": model.model_id,
        "half_life": settings.half_life,
        "profile_weight": settings.profile_weight,
        "rating_threshold": settings.rating_threshold,
        "hybrid_text_weight": settings.hybrid_text_weight,
        "hybrid_candidates": settings.hybrid_candidates,
        "cf": {
            "rank": options.cf.rank,
            "regularization": options.cf.regularization,
            "half_life": options.cf.half_life,
            "non_positive_weight": options.cf.non_positive_weight,
        },
    }
    return EvalReport(results, dataset, used, timings, ranked)


def _ingest(
    engine: Any,
    options: EvalOptions,
    data: Interactions,
    split: LeaveOneOutSplit,
    settings: Settings,
    progress: Progress | None,
) -> None:
    _step(progress, "ingest", 0, 1)
    item_options = ItemOptions(list_columns=options.list_columns, max_text_chars=settings.max_text_chars)
    loader.load(engine, loader.LoadPlan("items", [options.items], item_options, on_error="skip"))
    if options.users is not None:
        user_options = UserOptions(list_columns=options.list_columns, max_text_chars=settings.max_text_chars)
        loader.load(engine, loader.LoadPlan("users", [options.users], user_options, on_error="skip"))
    train_rows = [row for row, keep in zip(data.rows, split.train_mask.tolist(), strict=True) if keep]
    sessions = session_factory(engine)
    interaction_options = InteractionOptions(default_type=options.default_type)
    for start in range(0, len(train_rows), INGEST_BATCH):
        with transaction(sessions) as session:
            service.ingest_interactions(
                session,
                train_rows[start : start + INGEST_BATCH],
                interaction_options,
                source="training split",
            )
        _step(progress, "ingest", min(start + INGEST_BATCH, len(train_rows)), len(train_rows))


def _sync(
    sessions: Any, store: VectorStore, embedder: Embedder, settings: Settings, progress: Progress | None
) -> None:
    from nearrec.postgres import sync_repo

    with transaction(sessions) as session:
        total = sync_repo.outbox_stats(session).pending
    done = 0
    _step(progress, "sync (embed)", 0, total)

    def on_batch(batch: Any) -> None:
        nonlocal done
        done += batch.rows
        _step(progress, "sync (embed)", min(done, total), total)

    SyncWorker(sessions, store, embedder, settings).drain(on_batch=on_batch)


def _score(
    query: QueryService,
    store: VectorStore,
    settings: Settings,
    data: Interactions,
    split: LeaveOneOutSplit,
    options: EvalOptions,
    progress: Progress | None,
) -> tuple[dict[str, dict[str, float]], dict[str, list[list[str]]], dict[str, float]]:
    """Query every test user with every method; metrics per method."""
    code = {name: n for n, name in enumerate(data.items)}
    point_code: dict[int, int] = {}
    vectors: dict[int, list[float]] = {}
    for hit in store.scroll(settings.items_collection, with_vectors=True):
        ext = hit.payload.get("external_id")
        if ext is None:
            continue
        if ext not in code:
            code[str(ext)] = len(code)
        point_code[hit.id] = code[str(ext)]
        if hit.vector and "text" in hit.vector:
            vectors[code[str(ext)]] = hit.vector["text"]
    n_catalogue = len(point_code)
    dim = len(next(iter(vectors.values()))) if vectors else 1
    item_matrix = np.zeros((len(code), dim), dtype=np.float32)
    for c, vec in vectors.items():
        item_matrix[c] = vec
    users = [data.users[int(u)] for u in split.test_users]
    relevant = [[int(i)] for i in split.test_items]
    k = options.k
    results: dict[str, dict[str, float]] = {}
    ranked_ids: dict[str, list[list[str]]] = {}
    timings: dict[str, float] = {}
    for method in options.methods:
        started = time.perf_counter()
        lists: list[list[str]] = []
        for n, user in enumerate(users):
            try:
                recs = query.recommend(user, k=k, method=SERVICE_METHOD[method])
                lists.append([r.item_id for r in recs])
            except NotFoundError:
                lists.append([])
            if n % 50 == 0 or n == len(users) - 1:
                _step(progress, f"query {method}", n + 1, len(users))
        seconds = time.perf_counter() - started
        timings[f"query {method}"] = seconds
        ranked = np.full((len(users), k), -1, dtype=np.int64)
        for row, items in enumerate(lists):
            for col, item in enumerate(items[:k]):
                ranked[row, col] = code.get(item, -1)
        results[method] = _metrics(ranked, relevant, k, max(n_catalogue, 1), item_matrix)
        results[method]["ms_per_query"] = round(1000 * seconds / max(len(users), 1), 2)
        ranked_ids[method] = lists
    return results, ranked_ids, timings


def _metrics(
    ranked: np.ndarray[Any, np.dtype[np.int64]],
    relevant: Sequence[Sequence[int]],
    k: int,
    n_items: int,
    item_vectors: np.ndarray[Any, np.dtype[np.float32]],
) -> dict[str, float]:
    return {
        f"ndcg@{k}": metrics.ndcg_at_k(ranked, relevant, k),
        f"recall@{k}": metrics.recall_at_k(ranked, relevant, k),
        f"hit_rate@{k}": metrics.hit_rate(ranked, relevant, k),
        f"mrr@{k}": metrics.mrr(ranked, relevant, k),
        f"coverage@{k}": metrics.catalogue_coverage(ranked, n_items, k),
        f"ild@{k}": metrics.intra_list_diversity(ranked, item_vectors, k),
    }


__all__ = ["METHODS", "EvalOptions", "EvalReport", "read_interactions", "run_evaluation", "scratch_database"]
