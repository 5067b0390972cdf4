"""`nearrec evaluate`: offline evaluation through the real pipeline.

1. Read the interactions file and split it (:mod:`nearrec.evaluation.split`): temporal leave-last-positive-out,
   or random with a seed. Positives follow the product's rule (a rating >= ``rating_threshold``, or a type
   with a positive weight).
2. Create a scratch database on the configured Postgres server (the embedded one by default), migrate it,
   ingest the items (and users) files and the TRAINING interactions with the ingestion service.
3. Sync them with the real outbox worker into scratch collections (prefix ``eval_<pid>_``; a temporary
   directory for the embedded store), then train the ranking model (`nearrec train`, tuning by default on
   a validation split carved from the training part: the test users' held-out items are never seen).
4. Ask :class:`~nearrec.query.service.QueryService` for every test user's top k with each method, and
   score the lists (:mod:`nearrec.evaluation.metrics`). Every training interaction counts as seen, so the
   service's exclusion rule gives "candidates = every item the user has not seen".
5. Drop the scratch database and collections; score offline EASE and popularity in numpy on the same split
   (:mod:`nearrec.evaluation.offline`), so the report shows what serving costs in quality.

The pipeline is an entry point, like a CLI command: it owns the scratch database, and its stages (the
ingest batches and the outbox count here; the worker's batches and the train job in their own modules) open
and commit their transactions, at this top level only. The library code they call takes a Session.

The methods are those of :mod:`nearrec.query.methods`, by the same names. The ``popular`` method is the
service's cold-start list, with the popularity window widened to cover the whole dataset (old public
datasets are far outside the default 90 days).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from nearrec.config import Settings
from nearrec.embedding import load_embedder
from nearrec.embedding.base import Embedder
from nearrec.errors import InputFileError
from nearrec.evaluation.dataset import Interactions, read_interactions
from nearrec.evaluation.offline import offline_baselines
from nearrec.evaluation.scoring import score_methods
from nearrec.evaluation.split import LeaveOneOutSplit, random_leave_one_out, temporal_leave_one_out
from nearrec.ingest import loader, service
from nearrec.ingest.records import InteractionOptions, ItemOptions, UserOptions
from nearrec.jobs.train import TrainReport, train
from nearrec.model.user_vector import UserVectorParams
from nearrec.model.weighting import ModelConfig, served_config
from nearrec.postgres import scratch as db_scratch
from nearrec.postgres import sync_repo
from nearrec.postgres.engine import make_engine, resolve_database_url, session_factory, transaction
from nearrec.query.methods import CF_METHODS, METHODS, Method
from nearrec.query.service import QueryService
from nearrec.sync.worker import SyncWorker
from nearrec.vectors.base import VectorStore

Progress = Callable[[str, int, int], None]
"""(stage, done, total)."""
DEFAULT_METHODS: tuple[Method, ...] = ("popular", "text", "cf", "hybrid")
"""Every method, in the report's order (the baseline first)."""


@dataclass(frozen=True)
class EvalOptions:
    items: Path
    interactions: Path
    users: Path | None = None
    split: Literal["temporal", "random"] = "temporal"
    k: int = 10
    methods: tuple[Method, ...] = DEFAULT_METHODS
    seed: int = 0
    min_positives: int = 2
    list_columns: frozenset[str] = frozenset({"genres"})
    default_type: str = "rating"
    cf: ModelConfig | None = None
    """None: `nearrec train` tunes inside the training part (the default); else this configuration."""
    budget: float | None = 90.0
    offline: bool = True
    """Also score offline EASE and popularity in numpy on the same split."""


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
        run = _ScratchRun(url, store, scratch, model, timings, progress)
        results, ranked = run.evaluate(data, split, options)
    offline_config: dict[str, Any] = {}
    if options.offline:
        mark = time.perf_counter()
        offline, offline_config = offline_baselines(
            data.user_codes, data.item_codes, data.positive, data.timestamps, split, options.k, options.seed
        )
        results.update(offline)
        timings["offline baselines"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started
    used = {**_settings_used(settings, model, run.trained), **offline_config}
    return EvalReport(results, _dataset_summary(data, split, options), used, timings, ranked)


@dataclass
class _ScratchRun:
    """Stages 2-4 on the scratch database and collections; the stages' transactions are opened here."""

    url: str
    store: VectorStore
    settings: Settings
    embedder: Embedder
    timings: dict[str, float]
    progress: Progress | None
    trained: TrainReport | None = None

    def evaluate(
        self, data: Interactions, split: LeaveOneOutSplit, options: EvalOptions
    ) -> tuple[dict[str, dict[str, float]], dict[str, list[list[str]]]]:
        engine = make_engine(self.url)
        try:
            sessions = session_factory(engine)
            with self._timed("ingest"):
                _ingest(engine, sessions, options, data, split, self.settings, self.progress)
            with self._timed("sync (embed)"):
                _sync(sessions, self.store, self.embedder, self.settings, self.progress)
            if CF_METHODS & set(options.methods):
                with self._timed("train"):
                    self.trained = train(
                        sessions, self.store, self.settings, options.cf, budget=options.budget,
                        seed=options.seed, progress=self.progress,
                    )  # fmt: skip
                self.timings["train: search"] = self.trained.search_seconds
            query = QueryService(sessions, self.store, self.settings, embedder=lambda: self.embedder)
            results, ranked, per_method = score_methods(
                query, self.store, self.settings, data, split, options.methods, options.k, self.progress
            )
            self.timings.update(per_method)
            return results, ranked
        finally:
            engine.dispose()

    @contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        mark = time.perf_counter()
        yield
        self.timings[stage] = time.perf_counter() - mark


def _dataset_summary(data: Interactions, split: LeaveOneOutSplit, options: EvalOptions) -> dict[str, Any]:
    return {
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


def _settings_used(settings: Settings, model: Embedder, trained: TrainReport | None) -> dict[str, Any]:
    return {
        "embedding_model": model.model_id,
        "half_life": settings.half_life,
        "profile_weight": settings.profile_weight,
        "rating_threshold": settings.rating_threshold,
        "hybrid_text_weight": settings.hybrid_text_weight,
        "hybrid_candidates": settings.hybrid_candidates,
        "model": _model_used(trained),
    }


def _model_used(trained: TrainReport | None) -> dict[str, Any] | None:
    """The configuration `nearrec train` served (tuned or given) and its validation figures."""
    if trained is None or trained.meta is None:
        return None
    meta = trained.meta
    out: dict[str, Any] = {"config": served_config(meta).to_dict(), "vector": meta.vector}
    if trained.tuning is not None:
        out["validation_ndcg@10"] = round(trained.tuning.best_ndcg, 4)
        out["search_seconds"] = round(trained.search_seconds, 2)
        out["configurations_tried"] = len(trained.tuning.trials)
    return out


def _ingest(
    engine: Any,
    sessions: sessionmaker[Session],
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
    interaction_options = InteractionOptions(default_type=options.default_type)
    batch = settings.ingest_batch_size
    for start in range(0, len(train_rows), batch):
        with transaction(sessions) as session:
            service.ingest_interactions(
                session,
                train_rows[start : start + batch],
                interaction_options,
                source="training split",
            )
        _step(progress, "ingest", min(start + batch, len(train_rows)), len(train_rows))


def _sync(
    sessions: sessionmaker[Session],
    store: VectorStore,
    embedder: Embedder,
    settings: Settings,
    progress: Progress | None,
) -> None:
    with transaction(sessions) as session:
        total = sync_repo.outbox_stats(session).pending
    done = 0
    _step(progress, "sync (embed)", 0, total)

    def on_batch(batch: Any) -> None:
        nonlocal done
        done += batch.rows
        _step(progress, "sync (embed)", min(done, total), total)

    SyncWorker(sessions, store, embedder, settings).drain(on_batch=on_batch)


__all__ = [
    "DEFAULT_METHODS",
    "EvalOptions",
    "EvalReport",
    "read_interactions",
    "run_evaluation",
    "scratch_database",
]
