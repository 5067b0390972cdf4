"""`nearrec train`: learn the collaborative model from Postgres and write the items' "cf" named vectors.

The model is the low-rank ridge item-item model of :mod:`nearrec.model.cf`. It scores by a dot product;
the store is cosine-only, so item vectors are written augmented (see :mod:`nearrec.model.fusion`):
``[q, sqrt(M^2 - |q|^2)] / M``, one dimension more than the rank. The items collection metadata key ``cf``
records what the query service needs to fold in a user at query time (:class:`~nearrec.model.cf.CFMeta`).

Only ITEM vectors are written. A user's cf vector is folded in at query time from their recent history and
the items' vectors (:mod:`nearrec.query.collaborative`), so it is always fresh; a stored per-user snapshot
would never be read, and is not written.

Which interactions count as positive for the fold-in weights is the product's rule
(:func:`nearrec.model.cf.cf_values`: a rating >= ``rating_threshold``, or a type with a positive weight);
every interaction counts in the training matrix.

Items without interactions get no "cf" vector (the text branch still finds them). Items that have no point
in the store yet (not synced) are skipped; run the worker, then train again. The worker keeps an item's "cf"
vector when it re-embeds the item's text. A stale "cf" vector of an item that lost all its interactions
stays until a reindex.

This is a job boundary like the worker: :func:`train` opens its own (read-only) transaction.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session, sessionmaker

from nearrec.config import Settings
from nearrec.errors import ValidationError
from nearrec.model.cf import CF_VECTOR, META_CF, POSITIVE, CFConfig, CFMeta, CFModel, cf_values, train_cf
from nearrec.model.fusion import augment_items, scale_for
from nearrec.model.user_vector import UserVectorParams
from nearrec.postgres import train_repo
from nearrec.postgres.engine import transaction
from nearrec.vectors.base import VectorLike, VectorStore

log = logging.getLogger(__name__)

WRITE_CHUNK = 1000

Progress = Callable[[str, int, int], None]
"""(stage, done, total) callback."""


@dataclass
class TrainReport:
    interactions: int = 0
    users: int = 0
    items: int = 0
    item_vectors: int = 0
    skipped_items: int = 0
    seconds: float = 0.0
    meta: CFMeta | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["seconds"] = round(self.seconds, 3)
        return out


@dataclass(frozen=True)
class _Fitted:
    """A model fitted on the interactions, with the internal ids of its rows."""

    model: CFModel
    user_ids: npt.NDArray[np.int64]
    item_ids: npt.NDArray[np.int64]
    interactions: int


def train(
    sessions: sessionmaker[Session],
    store: VectorStore,
    settings: Settings,
    config: CFConfig | None = None,
    *,
    seed: int = 0,
    progress: Progress | None = None,
) -> TrainReport:
    """Train on every interaction in Postgres and write the items' "cf" vectors (see module docstring)."""
    started = time.perf_counter()
    cfg = config or CFConfig()

    def step(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(stage, done, total)

    fitted = _fit(sessions, settings, cfg, seed, step)
    report = TrainReport(
        interactions=fitted.interactions, users=int(fitted.user_ids.size), items=int(fitted.item_ids.size)
    )
    meta = _write_items(store, settings.items_collection, fitted, cfg, report, step)
    report.meta = meta
    report.seconds = time.perf_counter() - started
    log.info(
        "trained cf (rank %d) on %d interactions: %d item vectors in %.1fs",
        meta.rank, report.interactions, report.item_vectors, report.seconds,
    )  # fmt: skip
    return report


def _fit(
    sessions: sessionmaker[Session], settings: Settings, cfg: CFConfig, seed: int, step: Progress
) -> _Fitted:
    """Read every interaction (one transaction) and fit the model on the product's positives."""
    step("reading interactions", 0, 1)
    with transaction(sessions) as session:
        data = train_repo.all_interactions(session)
    step("reading interactions", 1, 1)
    if len(data) == 0:
        raise ValidationError("no interactions to train on; ingest interactions first", path="interactions")
    user_ids, user_idx = np.unique(data.user_id, return_inverse=True)
    item_ids, item_idx = np.unique(data.item_id, return_inverse=True)
    positives = cf_values(data.type, data.value, UserVectorParams.from_settings(settings))
    step("training", 0, 1)
    model = train_cf(
        user_idx, item_idx, positives, data.timestamp,
        n_users=user_ids.size, n_items=item_ids.size,
        config=dataclasses.replace(cfg, positive_threshold=POSITIVE / 2), seed=seed,
    )  # fmt: skip
    step("training", 1, 1)
    return _Fitted(model, user_ids, item_ids, len(data))


def _write_items(
    store: VectorStore, alias: str, fitted: _Fitted, cfg: CFConfig, report: TrainReport, step: Progress
) -> CFMeta:
    """Add the "cf" vector to the items collection, write the vectors of the items with interactions and
    record the model (:class:`CFMeta`) in the collection metadata."""
    factors = fitted.model.item_factors
    scale = scale_for(factors)
    dim = fitted.model.dim + 1
    store.ensure_collection(store.resolve_alias(alias) or alias, {CF_VECTOR: dim})
    nonzero = np.flatnonzero(np.abs(factors).sum(axis=1) > 0)
    vectors = augment_items(factors[nonzero], scale)
    report.item_vectors, report.skipped_items = _write(
        store, alias, fitted.item_ids[nonzero], vectors, lambda n, t: step("item vectors", n, t)
    )
    meta = CFMeta(
        rank=fitted.model.dim,
        dim=dim,
        scale=scale,
        regularization=cfg.regularization,
        half_life=cfg.half_life,
        non_positive_weight=cfg.non_positive_weight,
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        interactions=fitted.interactions,
        items=report.item_vectors,
        users=int(fitted.user_ids.size),
    )
    store.set_metadata(alias, {META_CF: meta.to_metadata()})
    return meta


def _write(
    store: VectorStore,
    collection: str,
    ids: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.floating[Any]],
    progress: Callable[[int, int], None],
) -> tuple[int, int]:
    """Set the "cf" vector of the points that exist; returns (written, skipped)."""
    written = skipped = 0
    total = int(ids.size)
    progress(0, total)
    for start in range(0, total, WRITE_CHUNK):
        chunk = [int(i) for i in ids[start : start + WRITE_CHUNK]]
        present = {h.id for h in store.retrieve(collection, chunk)}
        update: dict[int, Mapping[str, VectorLike]] = {
            pid: {CF_VECTOR: vectors[start + n]} for n, pid in enumerate(chunk) if pid in present
        }
        if update:
            store.update_vectors(collection, update)
        written += len(update)
        skipped += len(chunk) - len(update)
        progress(min(start + WRITE_CHUNK, total), total)
    return written, skipped


__all__ = ["TrainReport", "train"]
