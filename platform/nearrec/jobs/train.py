"""`nearrec train`: tune and fit the ranking model on Postgres interactions, write its item vectors beside the
live ones, then swap the model in atomically.

1. Read every interaction. By default search model families and hyper-parameters on a validation split
   carved from them (:mod:`nearrec.model.tuning`): EASE / item-kNN (item-item weights) and the low-rank
   ridge model, the weighting of the history, and the hybrid text weight (emulating the served fusion on
   the stored item text vectors). ``config`` skips the search (the manual path).
2. Fit the winner on all interactions and write every item's vector beside the live ones: an item-item model
   (sparse: the item's pruned weight column, see :mod:`nearrec.model.ease`) into the item-item slot
   (``ii_a`` / ``ii_b``, :data:`~nearrec.vectors.payload.ITEM_ITEM_SLOTS`) the live model does not use,
   emptied first; a ridge model into a new dense vector ``cf<generation>`` (its factors augmented for a
   cosine store, see :mod:`nearrec.model.fusion`). The live vectors are untouched meanwhile, so queries keep
   answering.
3. Swap: one metadata write (key ``cf``, :class:`~nearrec.model.cf.CFMeta`) points the query service at the
   new vector. Dense model vectors older than the previous generation are then dropped (the previous one
   stays for queries that read the metadata before the swap); the two slots stay.
4. Enqueue a refresh of every user with interactions (outbox rows, batched): the users' stored cf fold-ins
   carry the old model's tag, so queries fold their events in at query time until the worker has
   recomputed them under the new model (:mod:`nearrec.sync.cf_users`).

Which interactions count as positive is the product's rule (:func:`nearrec.model.cf.cf_values`). Items
without interactions get no model vector (the text branch still finds them). Items with no point in the
store yet (not synced) are skipped; run the worker, then train again.

This is a job boundary like the worker: :func:`train` opens its own (read-only) transaction.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session, sessionmaker
from threadpoolctl import threadpool_limits

from nearrec.config import Settings
from nearrec.errors import ValidationError
from nearrec.model import tuning as tuner
from nearrec.model.cf import META_CF, CFMeta, cf_values
from nearrec.model.ease import item_sparse_vectors
from nearrec.model.fusion import augment_items, scale_for
from nearrec.model.user_vector import UserVectorParams, type_weight
from nearrec.postgres import outbox, train_repo
from nearrec.postgres.engine import transaction
from nearrec.vectors.base import AnyVector, Sparse, VectorStore
from nearrec.vectors.payload import ITEM_ITEM_SLOTS, TEXT_VECTOR

log = logging.getLogger(__name__)

WRITE_CHUNK = 1000
ENQUEUE_CHUNK = 10_000
_MODEL_VECTOR = re.compile(r"(cf|ii)\d*")

Progress = Callable[[str, int, int], None]
"""(stage, done, total) callback."""


@dataclass
class TrainReport:
    interactions: int = 0
    users: int = 0
    items: int = 0
    item_vectors: int = 0
    skipped_items: int = 0
    users_enqueued: int = 0  # user refreshes enqueued after the swap (their stored cf fold-ins)
    seconds: float = 0.0
    search_seconds: float = 0.0
    meta: CFMeta | None = None
    tuning: tuner.TuningResult | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "tuning"}
        out["seconds"] = round(self.seconds, 3)
        out["search_seconds"] = round(self.search_seconds, 3)
        out["tuning"] = self.tuning.to_dict() if self.tuning is not None else None
        return out


@dataclass(frozen=True)
class _Data:
    """The interactions read from Postgres, as the tuner's dense indices, with the internal ids of rows."""

    raw: train_repo.InteractionArrays
    inter: tuner.Interactions
    user_ids: npt.NDArray[np.int64]
    item_ids: npt.NDArray[np.int64]


@dataclass(frozen=True)
class _Vectors:
    """The fitted model as item vectors under one new named vector."""

    name: str
    dim: int
    scale: float
    vectors: dict[int, AnyVector]


def manual_config(settings: Settings, **overrides: Any) -> tuner.ModelConfig:
    """The untuned model (``--no-tune``): the low-rank ridge model with the historical defaults."""
    base = tuner.ModelConfig(
        family="ridge", rank=64, regularization=400.0, half_life=10.0, low_weight=0.5,
        text_weight=settings.hybrid_text_weight,
    )  # fmt: skip
    return dataclasses.replace(base, **overrides)


def train(
    sessions: sessionmaker[Session],
    store: VectorStore,
    settings: Settings,
    config: tuner.ModelConfig | None = None,
    *,
    budget: float | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> TrainReport:
    """Tune (unless ``config`` is given), fit and swap in the model (see the module docstring)."""
    with threadpool_limits(blas_threads()):
        return _train(sessions, store, settings, config, budget, seed, progress)


def blas_threads() -> int:
    """BLAS threads for the dense algebra (eigendecomposition, products): the cores this process may use
    that the machine's load leaves idle, at least one. On a busy machine several BLAS threads contend for
    the same cores, and a dense eigendecomposition gets several times slower than with one thread."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    idle = cores - os.getloadavg()[0] if hasattr(os, "getloadavg") else float(cores)
    return max(1, min(cores, math.floor(idle)))


def _train(
    sessions: sessionmaker[Session],
    store: VectorStore,
    settings: Settings,
    config: tuner.ModelConfig | None,
    budget: float | None,
    seed: int,
    progress: Progress | None,
) -> TrainReport:
    started = time.perf_counter()
    report = TrainReport()
    step = progress or (lambda stage, done, total: None)
    data = _read(sessions, settings, step)
    items_alias = settings.items_collection
    if config is None:
        params = UserVectorParams.from_settings(settings)
        text = _text_side(store, items_alias, data, params, settings)
        mark = time.perf_counter()
        report.tuning = tuner.tune(data.inter, seed=seed, budget=budget, text=text, progress=progress)
        report.search_seconds = time.perf_counter() - mark
        config = report.tuning.best
    physical = store.resolve_alias(items_alias) or items_alias
    old = CFMeta.from_metadata(store.get_metadata(items_alias))
    generation = (old.generation if old is not None else 0) + 1
    step("fitting", 0, 1)
    fitted = _fit(store, physical, data, config, generation, seed, old.vector if old is not None else None)
    step("fitting", 1, 1)
    report.item_vectors, report.skipped_items = _write(
        store, items_alias, fitted.name, fitted.vectors, lambda n, t: step("item vectors", n, t)
    )
    report.interactions, report.users = len(data.raw), int(data.user_ids.size)
    report.items = int(data.item_ids.size)
    meta = _meta(report, config, fitted, generation, settings)
    store.set_metadata(items_alias, {META_CF: meta.to_metadata()})  # the swap
    _drop_old_vectors(store, physical, keep={fitted.name, old.vector if old is not None else fitted.name})
    report.users_enqueued = _enqueue_users(sessions, data.user_ids)
    report.meta = meta
    report.seconds = time.perf_counter() - started
    log.info(
        "trained %s (%s) on %d interactions: %d item vectors in %.1fs",
        config.family, fitted.name, report.interactions, report.item_vectors, report.seconds,
    )  # fmt: skip
    return report


def _read(sessions: sessionmaker[Session], settings: Settings, step: Progress) -> _Data:
    """Every interaction (one read-only transaction) as dense indices and the product's positives."""
    step("reading interactions", 0, 1)
    with transaction(sessions) as session:
        raw = train_repo.all_interactions(session)
    step("reading interactions", 1, 1)
    if len(raw) == 0:
        raise ValidationError("no interactions to train on; ingest interactions first", path="interactions")
    params = UserVectorParams.from_settings(settings)
    user_ids, user_idx = np.unique(raw.user_id, return_inverse=True)
    item_ids, item_idx = np.unique(raw.item_id, return_inverse=True)
    inter = tuner.Interactions(
        user_idx.astype(np.int64), item_idx.astype(np.int64), raw.type,
        cf_values(raw.type, raw.value, params) > 0, raw.timestamp, int(user_ids.size), int(item_ids.size),
    )  # fmt: skip
    return _Data(raw, inter, user_ids.astype(np.int64), item_ids.astype(np.int64))


def _fit(
    store: VectorStore,
    physical: str,
    data: _Data,
    config: tuner.ModelConfig,
    generation: int,
    seed: int,
    live: str | None,
) -> _Vectors:
    """Fit ``config`` on all interactions; create its new named vector in the physical items collection."""
    fitter = tuner.Fitter(data.inter, seed)
    item_ids = data.item_ids
    if config.family == "ridge":
        factors = fitter.ridge_factors(config)
        scale = scale_for(factors)
        name, dim = f"cf{generation}", int(factors.shape[1]) + 1
        nonzero = np.flatnonzero(np.abs(factors).sum(axis=1) > 0)
        augmented = augment_items(factors[nonzero], scale)
        dense: dict[int, AnyVector] = {int(item_ids[i]): augmented[n] for n, i in enumerate(nonzero)}
        store.ensure_collection(physical, {name: dim})
        return _Vectors(name, dim, scale, dense)
    sparse = item_sparse_vectors(fitter.item_weights(config), item_ids)
    name = _free_slot(store, physical, live)
    return _Vectors(name, 0, 1.0, {pid: Sparse(idx, vals) for pid, (idx, vals) in sparse.items()})


def _free_slot(store: VectorStore, physical: str, live: str | None) -> str:
    """The item-item slot the live model does not use, emptied for the new model. A collection created
    before the slots existed gets it added, without the fast filtered index until `nearrec reindex`."""
    name = next(slot for slot in ITEM_ITEM_SLOTS if slot != live)
    if name in store.sparse_vectors(physical):
        store.clear_vector(physical, name)
    else:
        log.warning(
            "collection %s predates the item-item slots: filtered item-item queries stay slow until "
            "`nearrec reindex`", physical,
        )  # fmt: skip
        store.ensure_collection(physical, {}, sparse=[name])
    return name


def _meta(
    report: TrainReport, config: tuner.ModelConfig, fitted: _Vectors, generation: int, settings: Settings
) -> CFMeta:
    return CFMeta(
        rank=config.rank if config.family == "ridge" else 0, dim=fitted.dim, scale=fitted.scale,
        regularization=config.regularization, half_life=config.half_life,
        non_positive_weight=config.low_weight, trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        interactions=report.interactions, items=report.item_vectors, users=report.users, family=config.family,
        vector=fitted.name, sparse=config.family != "ridge", generation=generation,
        text_weight=config.text_weight, candidates=settings.hybrid_candidates,
        type_weights=dict(config.type_weights), top_n=config.top_n, history=config.history,
        tuning=None if report.tuning is None else _summary(report.tuning),
    )  # fmt: skip


def _summary(result: tuner.TuningResult) -> dict[str, Any]:
    out = result.to_dict()
    out["trials"] = len(result.trials)
    return out


def _text_side(
    store: VectorStore, collection: str, data: _Data, params: UserVectorParams, settings: Settings
) -> tuner.TextSide | None:
    """Item text vectors (from the store) and the product's text-history weights, for the hybrid search."""
    rows: dict[int, int] = {int(pid): n for n, pid in enumerate(data.item_ids)}
    found: dict[int, list[float]] = {}
    ids = [int(i) for i in data.item_ids]
    for start in range(0, len(ids), WRITE_CHUNK):
        for hit in store.retrieve(collection, ids[start : start + WRITE_CHUNK], with_vectors=True):
            if hit.vector and TEXT_VECTOR in hit.vector:
                found[hit.id] = hit.vector[TEXT_VECTOR]
    if not found:
        return None
    dim = len(next(iter(found.values())))
    matrix = np.zeros((len(ids), dim), dtype=np.float32)
    for pid, vec in found.items():
        matrix[rows[pid]] = vec
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    raw = data.raw
    weights = np.asarray(
        [
            type_weight(k, None if v != v else float(v), params)
            for k, v in zip(raw.type, raw.value, strict=True)
        ],
        dtype=np.float64,
    )
    return tuner.TextSide(matrix, weights, settings.half_life, settings.hybrid_candidates)


def _write(
    store: VectorStore,
    collection: str,
    name: str,
    vectors: Mapping[int, AnyVector],
    progress: Callable[[int, int], None],
) -> tuple[int, int]:
    """Set the ``name`` vector of the points that exist; returns (written, skipped)."""
    written = skipped = 0
    ids = sorted(vectors)
    total = len(ids)
    progress(0, total)
    for start in range(0, total, WRITE_CHUNK):
        chunk = ids[start : start + WRITE_CHUNK]
        present = {h.id for h in store.retrieve(collection, chunk)}
        update: dict[int, Mapping[str, AnyVector]] = {
            pid: {name: vectors[pid]} for pid in chunk if pid in present
        }
        if update:
            store.update_vectors(collection, update)
        written += len(update)
        skipped += len(chunk) - len(update)
        progress(min(start + WRITE_CHUNK, total), total)
    return written, skipped


def _enqueue_users(sessions: sessionmaker[Session], user_ids: npt.NDArray[np.int64]) -> int:
    """A refresh of every user in ``user_ids`` (those with interactions), ``ENQUEUE_CHUNK`` a transaction;
    users with a refresh already pending get none. Returns how many were added."""
    added = 0
    for start in range(0, len(user_ids), ENQUEUE_CHUNK):
        with transaction(sessions) as session:
            added += outbox.enqueue_refresh(session, "user", user_ids[start : start + ENQUEUE_CHUNK].tolist())
    return added


def _drop_old_vectors(store: VectorStore, collection: str, keep: set[str]) -> None:
    for vector in [*store.vector_sizes(collection), *store.sparse_vectors(collection)]:
        if _MODEL_VECTOR.fullmatch(vector) and vector not in keep:
            store.delete_vector(collection, vector)


__all__ = ["TrainReport", "blas_threads", "manual_config", "train"]
