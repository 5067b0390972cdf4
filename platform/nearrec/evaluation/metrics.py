"""Offline ranking metrics in pure numpy.

Conventions shared by every function:

- ``ranked`` is a 2-D integer array, one row per user, holding that user's recommended item ids best first.
  Rows may be padded with ``-1`` (or any negative id) when a user got fewer items; padding never matches.
- ``relevant`` is one collection of relevant item ids per row of ``ranked`` (for leave-one-out, a one-item
  list per user). Users with no relevant item count as 0 for every metric that needs one.
- Functions return the mean over users as a ``float``; ``*_per_user`` helpers return the per-user array
  for confidence intervals or paired tests.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "catalogue_coverage",
    "hit_rate",
    "hits_matrix",
    "intra_list_diversity",
    "mrr",
    "ndcg_at_k",
    "ndcg_per_user",
    "recall_at_k",
]


def _ranked_array(ranked: ArrayLike, k: int | None = None) -> NDArray[np.int64]:
    arr = np.asarray(ranked)
    if arr.ndim != 2:
        raise ValueError("ranked must be a 2-D array (users x positions)")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError("ranked must hold integer item ids")
    if k is not None:
        if k < 1:
            raise ValueError("k must be >= 1")
        arr = arr[:, :k]
    return arr.astype(np.int64, copy=False)


def hits_matrix(
    ranked: ArrayLike, relevant: Sequence[Collection[int]], k: int | None = None
) -> NDArray[np.bool_]:
    """Boolean matrix (users x positions): True where the ranked item is relevant to that user.

    Duplicate ids in a row only count at their first position.
    """
    arr = _ranked_array(ranked, k)
    if len(relevant) != arr.shape[0]:
        raise ValueError("relevant must have one entry per row of ranked")
    hits = np.zeros(arr.shape, dtype=bool)
    for row, (items, rel) in enumerate(zip(arr, relevant, strict=True)):
        if not rel:
            continue
        seen: set[int] = set()
        rel_set = {int(x) for x in rel}
        for pos, item in enumerate(items.tolist()):
            if item >= 0 and item in rel_set and item not in seen:
                hits[row, pos] = True
            seen.add(item)
    return hits


def ndcg_per_user(ranked: ArrayLike, relevant: Sequence[Collection[int]], k: int) -> NDArray[np.float64]:
    """Binary-relevance NDCG@k per user: DCG = sum 1/log2(pos+1) over hits, divided by the ideal DCG.

    With one relevant item this is ``1/log2(rank+1)`` when the item is in the top k, else 0.
    """
    hits = hits_matrix(ranked, relevant, k)
    width = hits.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, width + 2, dtype=np.float64))
    dcg = (hits * discounts).sum(axis=1)
    n_rel = np.array([len(set(r)) for r in relevant], dtype=np.int64)
    ideal_discounts = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    ideal_cum = np.concatenate([[0.0], np.cumsum(ideal_discounts)])
    idcg = ideal_cum[np.minimum(n_rel, k)]
    out = np.zeros(hits.shape[0], dtype=np.float64)
    np.divide(dcg, idcg, out=out, where=idcg > 0)
    return out


def ndcg_at_k(ranked: ArrayLike, relevant: Sequence[Collection[int]], k: int) -> float:
    """Mean binary-relevance NDCG@k over users (see :func:`ndcg_per_user`)."""
    per_user = ndcg_per_user(ranked, relevant, k)
    return float(per_user.mean()) if per_user.size else 0.0


def recall_at_k(ranked: ArrayLike, relevant: Sequence[Collection[int]], k: int) -> float:
    """Mean over users of (relevant items in the top k) / (number of relevant items)."""
    hits = hits_matrix(ranked, relevant, k)
    n_rel = np.array([len(set(r)) for r in relevant], dtype=np.float64)
    per_user = np.zeros(hits.shape[0], dtype=np.float64)
    np.divide(hits.sum(axis=1), n_rel, out=per_user, where=n_rel > 0)
    return float(per_user.mean()) if per_user.size else 0.0


def hit_rate(ranked: ArrayLike, relevant: Sequence[Collection[int]], k: int) -> float:
    """Fraction of users with at least one relevant item in their top k."""
    hits = hits_matrix(ranked, relevant, k)
    return float(hits.any(axis=1).mean()) if hits.shape[0] else 0.0


def mrr(ranked: ArrayLike, relevant: Sequence[Collection[int]], k: int | None = None) -> float:
    """Mean reciprocal rank of the first relevant item (0 when none appears in the first k, or the list)."""
    hits = hits_matrix(ranked, relevant, k)
    if hits.shape[0] == 0:
        return 0.0
    first = np.argmax(hits, axis=1)
    found = hits.any(axis=1)
    return float(np.where(found, 1.0 / (first + 1), 0.0).mean())


def catalogue_coverage(ranked: ArrayLike, n_items: int, k: int) -> float:
    """Fraction of the catalogue (``n_items`` items) that appears in at least one user's top k."""
    if n_items < 1:
        raise ValueError("n_items must be >= 1")
    arr = _ranked_array(ranked, k)
    distinct = np.unique(arr[arr >= 0])
    return float(distinct.size / n_items)


def intra_list_diversity(ranked: ArrayLike, item_vectors: ArrayLike, k: int) -> float:
    """Mean over users of the average pairwise cosine distance (1 - cosine) within the top k.

    ``item_vectors[i]`` is the vector of item id ``i``. Lists with fewer than two valid items are skipped;
    returns 0.0 when no list qualifies.
    """
    arr = _ranked_array(ranked, k)
    vecs = np.asarray(item_vectors, dtype=np.float64)
    if vecs.ndim != 2:
        raise ValueError("item_vectors must be a 2-D array (items x dims)")
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    unit = np.divide(vecs, norms, out=np.zeros_like(vecs), where=norms > 0)
    scores: list[float] = []
    for row in arr:
        ids = row[row >= 0]
        if ids.size and ids.max() >= unit.shape[0]:
            raise ValueError("ranked holds an item id without a vector")
        n = ids.size
        if n < 2:
            continue
        sims = unit[ids] @ unit[ids].T
        mean_sim = (sims.sum() - np.trace(sims)) / (n * (n - 1))
        scores.append(1.0 - float(mean_sim))
    return float(np.mean(scores)) if scores else 0.0
