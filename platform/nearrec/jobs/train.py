"""`nearrec train`: learn the collaborative model from Postgres and write the "cf" named vectors.

The model is the low-rank ridge item-item model of :mod:`nearrec.model.cf`. It is a dot-product
model; the store is cosine-only, so item vectors are written augmented (see :mod:`nearrec.model.fusion`):
``[q, sqrt(M^2 - |q|^2)] / M``, one dimension more than the rank. The collection metadata key ``cf``
records what the query service needs to fold in a user at query time (:class:`CFMeta`).

Which interactions count as positive for the fold-in weights is the product's rule
(:func:`nearrec.model.user_vector.type_weight` > 0: a rating >= ``rating_threshold``, or a type with a
positive weight); every interaction counts in the training matrix.

Items without interactions get no "cf" vector (the text branch still finds them). Items or users that
have no point in the store yet (not synced) are skipped; run the worker, then train again. The worker keeps
an item's "cf" vector when it re-embeds the item's text. A stale "cf" vector of an item that lost all its
interactions stays until a reindex.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session, sessionmaker

from nearrec.config import Settings
from nearrec.errors import ValidationError
from nearrec.model.cf import CFConfig, train_cf
from nearrec.model.fusion import augment_items, augment_user, scale_for
from nearrec.model.user_vector import UserVectorParams, type_weight
from nearrec.postgres import train_repo
from nearrec.postgres.engine import transaction
from nearrec.vectors.base import VectorLike, VectorStore

log = logging.getLogger(__name__)

CF_VECTOR = "cf"
META_CF = "cf"
WRITE_CHUNK = 1000
POSITIVE = 1.0
"""Values handed to the CF model: 1.0 for a positive interaction, 0.0 otherwise (threshold 0.5)."""

Progress = Callable[[str, int, int], None]
"""(stage, done, total) callback."""


@dataclass(frozen=True)
class CFMeta:
    """The ``cf`` entry of the items collection metadata."""

    rank: int
    dim: int
    scale: float
    regularization: float
    half_life: float | None
    non_positive_weight: float
    trained_at: str
    interactions: int = 0
    items: int = 0
    users: int = 0

    def config(self) -> CFConfig:
        """The fold-in configuration (values are already 1.0 / 0.0 positives, see :func:`cf_values`)."""
        return CFConfig(
            rank=self.rank,
            regularization=self.regularization,
            half_life=self.half_life,
            positive_threshold=POSITIVE / 2,
            non_positive_weight=self.non_positive_weight,
        )

    def to_metadata(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> CFMeta | None:
        """The trained model's metadata, or None when the collection has no cf vectors."""
        raw = metadata.get(META_CF)
        if not isinstance(raw, Mapping):
            return None
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in raw.items() if k in names})
        except TypeError:
            return None


@dataclass
class TrainReport:
    interactions: int = 0
    users: int = 0
    items: int = 0
    item_vectors: int = 0
    user_vectors: int = 0
    skipped_items: int = 0
    skipped_users: int = 0
    seconds: float = 0.0
    meta: CFMeta | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["seconds"] = round(self.seconds, 3)
        return out


def cf_values(
    types: Sequence[str], values: npt.ArrayLike, params: UserVectorParams
) -> npt.NDArray[np.float64]:
    """1.0 for interactions the product counts as positive, else 0.0 (NaN values mean "no value")."""
    vals = np.asarray(values, dtype=np.float64)
    out = np.zeros(vals.shape[0], dtype=np.float64)
    for n, (kind, value) in enumerate(zip(types, vals.tolist(), strict=True)):
        v = None if value != value else value
        if type_weight(kind, v, params) > 0:
            out[n] = POSITIVE
    return out


def train(
    sessions: sessionmaker[Session],
    store: VectorStore,
    settings: Settings,
    config: CFConfig | None = None,
    *,
    seed: int = 0,
    progress: Progress | None = None,
) -> TrainReport:
    """Train on every interaction in Postgres and write item and user "cf" vectors (see module docstring)."""
    started = time.perf_counter()
    cfg = config or CFConfig()
    report = TrainReport()

    def step(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(stage, done, total)

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
    scale = scale_for(model.item_factors)
    dim = model.dim + 1
    items_alias, users_alias = settings.items_collection, settings.users_collection
    for alias in (items_alias, users_alias):
        store.ensure_collection(store.resolve_alias(alias) or alias, {CF_VECTOR: dim})

    nonzero = np.flatnonzero(np.abs(model.item_factors).sum(axis=1) > 0)
    item_vecs = augment_items(model.item_factors[nonzero], scale)
    written, skipped = _write(
        store, items_alias, item_ids[nonzero], item_vecs, lambda n, t: step("item vectors", n, t)
    )
    report.item_vectors, report.skipped_items = written, skipped
    user_vecs = (
        np.stack([augment_user(u) for u in model.user_factors]) if user_ids.size else np.zeros((0, dim))
    )
    written, skipped = _write(
        store, users_alias, user_ids, user_vecs, lambda n, t: step("user vectors", n, t)
    )
    report.user_vectors, report.skipped_users = written, skipped

    meta = CFMeta(
        rank=model.dim,
        dim=dim,
        scale=scale,
        regularization=cfg.regularization,
        half_life=cfg.half_life,
        non_positive_weight=cfg.non_positive_weight,
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        interactions=len(data),
        items=report.item_vectors,
        users=report.user_vectors,
    )
    store.set_metadata(items_alias, {META_CF: meta.to_metadata()})
    store.set_metadata(users_alias, {META_CF: meta.to_metadata()})
    report.interactions, report.users, report.items = len(data), int(user_ids.size), int(item_ids.size)
    report.meta = meta
    report.seconds = time.perf_counter() - started
    log.info(
        "trained cf (rank %d) on %d interactions: %d item and %d user vectors in %.1fs",
        meta.rank, len(data), report.item_vectors, report.user_vectors, report.seconds,
    )  # fmt: skip
    return report


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


__all__ = ["CF_VECTOR", "CFMeta", "TrainReport", "cf_values", "train"]
