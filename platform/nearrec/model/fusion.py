"""Pure helpers for collaborative ("cf") and hybrid retrieval: cosine serving of a dot-product model, score
fusion, and an MMR re-rank. No I/O.

Serving a dot-product model on a cosine-only store (the augmentation trick): with ``M`` >= every item
factor norm, the item vector ``[q, sqrt(M^2 - |q|^2)] / M`` has unit length and the user vector ``[u, 0]``
gives ``cos = q . u / (M |u|)``: the same ranking as the dot product ``q . u`` for any one user. The stored
item vector gives ``q`` back exactly (:func:`item_factors_from_stored`), so the query service can fold in a
user from the stored vectors of their history.

Fusion (:func:`fuse_dbsf`) is distribution-based score fusion with weights: each list's scores are mapped
to ``(s - (mean - 3 sd)) / (6 sd)`` (Qdrant's DBSF normalisation, sample sd), weighted, and summed per item;
an item missing from a list gets 0 from it. Ties go to the smaller id, so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


class Ranked(Protocol):
    """Anything with an id and a score (e.g. a vector store hit)."""

    @property
    def id(self) -> int: ...

    @property
    def score(self) -> float: ...


class Scored(NamedTuple):
    """One fused result: an id and its fused score."""

    id: int
    score: float


R = TypeVar("R", bound=Ranked)

__all__ = [
    "augment_items",
    "augment_user",
    "dbsf_normalise",
    "fuse_dbsf",
    "item_factors_from_stored",
    "mmr_rerank",
    "scale_for",
    "Ranked",
    "Scored",
]


def scale_for(item_factors: npt.ArrayLike) -> float:
    """The ``M`` of the augmentation: the largest item factor norm (1.0 when every factor is zero)."""
    q = np.asarray(item_factors, dtype=np.float64)
    if q.size == 0:
        return 1.0
    top = float(np.linalg.norm(q, axis=1).max())
    return top if top > 0 else 1.0


def augment_items(item_factors: npt.ArrayLike, scale: float) -> FloatArray:
    """Unit-length cosine vectors ``[q, sqrt(M^2 - |q|^2)] / M`` (rows), one dimension more than ``q``."""
    q = np.asarray(item_factors, dtype=np.float64)
    if q.ndim != 2:
        raise ValueError("item_factors must be 2-D (items x rank)")
    norms2 = (q**2).sum(axis=1)
    if scale <= 0 or np.any(norms2 > scale**2 * (1 + 1e-6)):
        raise ValueError("scale must be positive and at least every item factor norm")
    extra = np.sqrt(np.clip(scale**2 - norms2, 0.0, None))
    return (np.hstack([q, extra[:, None]]) / scale).astype(np.float32)


def augment_user(user_factor: npt.ArrayLike) -> FloatArray:
    """The query vector ``[u, 0]`` for a user factor ``u``."""
    u = np.asarray(user_factor, dtype=np.float32).reshape(-1)
    return np.concatenate([u, np.zeros(1, dtype=np.float32)])


def item_factors_from_stored(stored: npt.ArrayLike, scale: float) -> FloatArray:
    """Recover item factors ``q`` from stored augmented vectors (rows): drop the last column, times ``M``."""
    v = np.asarray(stored, dtype=np.float64)
    if v.ndim == 1:
        v = v.reshape(1, -1)
    return (v[:, :-1] * scale).astype(np.float32)


def dbsf_normalise(scores: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``(s - (mean - 3 sd)) / (6 sd)`` with the sample sd; a list of one, or of equal scores, maps to 0.5."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size < 2:
        return np.full(s.shape, 0.5)
    sd = float(s.std(ddof=1))
    if sd <= 1e-12:
        return np.full(s.shape, 0.5)
    return (s - (float(s.mean()) - 3 * sd)) / (6 * sd)


def fuse_dbsf(lists: Sequence[tuple[Sequence[Ranked], float]], limit: int | None = None) -> list[Scored]:
    """Weighted DBSF over ranked lists ``(hits, weight)``; returns the union best first (``limit`` kept)
    as ``(id, fused score)``."""
    fused: dict[int, float] = {}
    for hits, weight in lists:
        if not hits:
            continue
        norm = dbsf_normalise([h.score for h in hits])
        counted: set[int] = set()
        for hit, z in zip(hits, norm, strict=True):
            if hit.id in counted:
                continue  # a duplicate within one list counts once
            counted.add(hit.id)
            fused[hit.id] = fused.get(hit.id, 0.0) + weight * float(z)
    order = sorted(fused, key=lambda i: (-fused[i], i))
    if limit is not None:
        order = order[:limit]
    return [Scored(i, fused[i]) for i in order]


def mmr_rerank(hits: Sequence[R], vectors: Mapping[int, npt.ArrayLike], k: int, diversity: float) -> list[R]:
    """Maximal marginal relevance over ``hits`` (best first): at each step pick the item maximising
    ``(1 - diversity) * relevance - diversity * max cosine to the items already picked``.

    Relevance is the hit score min-max scaled to [0, 1]; hits without a vector are never penalised."""
    if diversity <= 0 or len(hits) <= 1:
        return list(hits[:k])
    scores = np.array([h.score for h in hits], dtype=np.float64)
    span = float(scores.max() - scores.min())
    rel = (scores - scores.min()) / span if span > 0 else np.ones_like(scores)
    dim = next((np.asarray(v).size for v in vectors.values()), 1)
    mat = np.zeros((len(hits), dim), dtype=np.float64)
    for row, hit in enumerate(hits):
        if hit.id in vectors:
            v = np.asarray(vectors[hit.id], dtype=np.float64).reshape(-1)
            n = float(np.linalg.norm(v))
            mat[row] = v / n if n > 0 else v
    picked: list[int] = []
    max_sim = np.full(len(hits), -np.inf)
    left = np.ones(len(hits), dtype=bool)
    for _ in range(min(k, len(hits))):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        value = np.where(left, (1 - diversity) * rel - diversity * penalty, -np.inf)
        best = int(np.argmax(value))
        picked.append(best)
        left[best] = False
        max_sim = np.maximum(max_sim, mat @ mat[best])
    return [hits[i] for i in picked]
