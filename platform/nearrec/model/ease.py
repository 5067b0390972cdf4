"""Item-item models with exact weights, served as Qdrant sparse vectors. Pure numpy / scipy, no I/O.

A user with history weights ``h`` (one per item, see :func:`decayed_history`) scores item ``j`` by
``(h W)_j = sum_i h_i W[i, j]``. Two ways to get ``W``:

- **EASE** (Steck 2019), the closed form of ``min ||X - XB||^2 + lam ||B||^2`` with ``diag(B) = 0``:
  ``P = (X^T X + lam I)^-1``, ``B = -P / diag(P)`` (column-wise), diagonal set to 0. It needs the dense
  ``items x items`` Gram matrix, so it is used up to :data:`MAX_DENSE_ITEMS` items.
- **item-kNN**, the sparse variant for larger catalogs: cosine similarity of the item columns of ``X``,
  computed sparse, diagonal 0.

Serving (:func:`prune_columns`, :func:`item_sparse_vectors`, :func:`query_sparse_vector`): column ``j``
of ``W`` pruned to its ``top_n`` largest-magnitude weights is item ``j``'s sparse vector (indices = the
internal ids of the history items ``i``), the user's history ``h`` is the query sparse vector (indices =
the internal ids of the history items), so Qdrant's sparse dot product IS the model's score over the
pruned weights. With ``top_n`` >= the catalog size nothing is pruned and the served ranking equals
``h W`` exactly. The query is scaled to unit L1 norm, which changes no ranking and keeps scores
comparable across users.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "MAX_DENSE_ITEMS",
    "EaseSolver",
    "ItemItemModel",
    "binary_matrix",
    "decayed_history",
    "item_sparse_vectors",
    "knn_weights",
    "prune_columns",
    "query_sparse_vector",
    "score_users",
]

MAX_DENSE_ITEMS = 12_000
"""Largest catalog for the dense EASE solve (the Gram matrix takes ``8 n^2`` bytes: 1.15 GB here)."""
MAX_COOCCURRENCE = 200_000_000
"""Largest item-item co-occurrence product the sparse kNN fit may build (bounded by the sum over users of
their history length squared; ~12 bytes an entry, so ~2.4 GB here). Past it the family is not searched."""
MAX_SPARSE_INDEX = 2**32 - 1
"""Sparse vector indices are unsigned 32-bit in Qdrant."""


@dataclass(frozen=True)
class ItemItemModel:
    """Pruned item-item weights: ``weights[:, j]`` is item ``j``'s sparse vector (CSC, float32)."""

    weights: sp.csc_matrix
    family: str
    regularization: float
    top_n: int

    @property
    def n_items(self) -> int:
        return int(self.weights.shape[0])


def binary_matrix(user_idx: ArrayLike, item_idx: ArrayLike, n_users: int, n_items: int) -> sp.csr_matrix:
    """The 0/1 user x item matrix (duplicates count once)."""
    users = np.asarray(user_idx, dtype=np.int64)
    items = np.asarray(item_idx, dtype=np.int64)
    x = sp.csr_matrix((np.ones(users.size), (users, items)), shape=(n_users, n_items))
    x.data[:] = 1.0
    return x


def decayed_history(
    user_idx: ArrayLike,
    item_idx: ArrayLike,
    weights: ArrayLike,
    timestamps: ArrayLike | None,
    n_users: int,
    n_items: int,
    half_life: float | None,
    max_items: int | None = None,
) -> sp.csr_matrix:
    """Users x items history weights: ``weight * 0.5 ** (position_from_newest / half_life)``.

    Only the newest event of a (user, item) pair counts; ties in time go to the later row. Rows with a
    zero weight are kept out of the positions (they are not part of the history). ``max_items`` keeps each
    user's most recent ones only."""
    users = np.asarray(user_idx, dtype=np.int64)
    items = np.asarray(item_idx, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float64)
    keep = w != 0
    users, items, w = users[keep], items[keep], w[keep]
    rows = np.arange(users.size)
    times = rows if timestamps is None else np.asarray(timestamps, dtype=np.float64)[keep]
    if users.size == 0:
        return sp.csr_matrix((n_users, n_items), dtype=np.float64)
    order = np.lexsort((rows, times, users))
    u, i, v = users[order], items[order], w[order]
    pair = u * n_items + i
    newest = np.sort(u.size - 1 - np.unique(pair[::-1], return_index=True)[1])
    u, i, v = u[newest], i[newest], v[newest]
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    counts = np.diff(np.r_[starts, u.size])
    from_newest = np.repeat(counts, counts) - 1 - (np.arange(u.size) - np.repeat(starts, counts))
    if half_life is not None:
        v = v * 0.5 ** (from_newest / half_life)
    if max_items is not None:
        recent = from_newest < max_items
        u, i, v = u[recent], i[recent], v[recent]
    return sp.csr_matrix((v, (u, i)), shape=(n_users, n_items))


class EaseSolver:
    """EASE weights for many ``lam`` on one interaction matrix: the Gram matrix ``G = X^T X`` is
    eigendecomposed once (``G = Q diag(e) Q^T``), then ``P = Q diag(1 / (e + lam)) Q^T`` costs one matrix
    product per ``lam``. The same decomposition gives the low-rank ridge factors (:meth:`ridge_factors`):
    the right singular vectors of ``X`` are ``Q`` and its squared singular values ``e``."""

    def __init__(self, x: sp.spmatrix | sp.sparray) -> None:
        n_items = int(x.shape[1])
        if n_items > MAX_DENSE_ITEMS:
            raise ValueError(
                f"{n_items} items: too many for dense EASE (max {MAX_DENSE_ITEMS}); use item-kNN"
            )
        xc = sp.csr_matrix(x, dtype=np.float64)
        gram = np.asarray((xc.T @ xc).toarray(), dtype=np.float64)
        e, q = np.linalg.eigh(gram)
        self.eigenvalues: NDArray[np.float64] = np.clip(e, 0.0, None)
        self.eigenvectors: NDArray[np.float64] = q
        self._q32: NDArray[np.float32] | None = None

    def weights(self, regularization: float, fast: bool = False) -> NDArray[np.floating[Any]]:
        """The dense EASE ``B`` (zero diagonal) for this ``lam``. ``fast``: the product in float32 (about
        twice as fast; ~1e-6 relative error, far below what changes a ranking), as the tuner uses it."""
        if regularization <= 0:
            raise ValueError("the EASE regularization must be > 0")
        q: NDArray[np.floating[Any]] = self.eigenvectors
        if fast:
            if self._q32 is None:
                self._q32 = self.eigenvectors.astype(np.float32)
            q = self._q32
        p = (q / (self.eigenvalues + regularization).astype(q.dtype)) @ q.T
        b: NDArray[np.floating[Any]] = -p / np.diag(p)[None, :]
        np.fill_diagonal(b, 0.0)
        return b

    def ridge_factors(self, rank: int, regularization: float) -> NDArray[np.float64]:
        """Item factors ``V_r sqrt(s^2 / (s^2 + lam))`` of the rank-``rank`` ridge model (signs fixed: the
        largest-magnitude entry of every factor is positive)."""
        r = max(1, min(rank, self.eigenvalues.size))
        e = self.eigenvalues[::-1][:r]
        v = self.eigenvectors[:, ::-1][:, :r]
        signs = np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(r)])
        signs[signs == 0] = 1.0
        return np.asarray(v * signs * np.sqrt(e / (e + regularization)), dtype=np.float64)


def cooccurrence_bound(user_idx: NDArray[np.integer]) -> int:
    """An upper bound on the non-zeros of ``X^T X`` for interactions of users ``user_idx``: sum of n_u^2."""
    counts = np.bincount(np.asarray(user_idx, dtype=np.int64)).astype(np.float64)
    return int((counts**2).sum())


def knn_weights(x: sp.spmatrix | sp.sparray, neighbours: int) -> sp.csc_matrix:
    """Cosine item-item similarity of the columns of ``x``, each column pruned to its top ``neighbours``."""
    xc = sp.csc_matrix(x, dtype=np.float64)
    norms = np.sqrt(np.asarray(xc.multiply(xc).sum(axis=0)).ravel())
    norms[norms == 0] = 1.0
    xn = xc @ sp.diags(1.0 / norms)
    sim = sp.csc_matrix(xn.T @ xn)
    sim.setdiag(0.0)
    sim.eliminate_zeros()
    return prune_columns(sim, neighbours)


def prune_columns(weights: NDArray[np.floating] | sp.spmatrix | sp.sparray, top_n: int) -> sp.csc_matrix:
    """Keep the ``top_n`` largest-magnitude entries of every column (ties: smaller row); CSC float32."""
    if top_n < 1:
        raise ValueError("top_n must be >= 1")
    if sp.issparse(weights):
        return _prune_sparse(sp.csc_matrix(weights), top_n)
    w = np.asarray(weights, dtype=np.float64)
    n_rows, n_cols = w.shape
    if top_n >= n_rows:
        out = sp.csc_matrix(w.astype(np.float32))
        out.eliminate_zeros()
        return out
    top = np.argpartition(-np.abs(w), top_n - 1, axis=0)[:top_n]
    cols = np.broadcast_to(np.arange(n_cols), top.shape)
    out = sp.csc_matrix(
        (w[top, cols].ravel().astype(np.float32), (top.ravel(), cols.ravel())), shape=(n_rows, n_cols)
    )
    out.eliminate_zeros()
    out.sort_indices()
    return out


def _prune_sparse(m: sp.csc_matrix, top_n: int) -> sp.csc_matrix:
    rows: list[NDArray[np.int64]] = []
    cols: list[NDArray[np.int64]] = []
    vals: list[NDArray[np.float64]] = []
    for j in range(m.shape[1]):
        start, end = m.indptr[j], m.indptr[j + 1]
        idx, val = m.indices[start:end], m.data[start:end]
        if idx.size > top_n:
            keep = np.lexsort((idx, -np.abs(val)))[:top_n]
            idx, val = idx[keep], val[keep]
        rows.append(idx.astype(np.int64))
        cols.append(np.full(idx.size, j, dtype=np.int64))
        vals.append(val)
    out = sp.csc_matrix(
        (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))), shape=m.shape
    )
    out.eliminate_zeros()
    out.sort_indices()
    return out


def score_users(history: sp.spmatrix | sp.sparray, weights: sp.spmatrix | sp.sparray) -> NDArray[np.float64]:
    """Dense users x items scores ``history @ weights``."""
    out = sp.csr_matrix(history, dtype=np.float64) @ sp.csc_matrix(weights, dtype=np.float64)
    return np.asarray(out.toarray() if sp.issparse(out) else out, dtype=np.float64)


def listed_scores(
    history: sp.spmatrix | sp.sparray, weights: sp.spmatrix | sp.sparray
) -> NDArray[np.float64]:
    """Scores ``history @ weights`` as the store's sparse search lists them: ``-inf`` for every item whose
    stored column shares no index with the history (the search never returns it), whatever its score."""
    h = sp.csr_matrix(history, dtype=np.float64)
    w = sp.csc_matrix(weights, dtype=np.float64)
    scores = np.asarray((h @ w).toarray(), dtype=np.float64)
    pattern = sp.csc_matrix((np.ones(w.nnz), w.indices, w.indptr), shape=w.shape)
    reached = np.asarray((abs(h) @ pattern).toarray()) > 0
    scores[~reached] = -np.inf
    return scores


def item_sparse_vectors(
    weights: sp.spmatrix | sp.sparray, point_ids: ArrayLike
) -> dict[int, tuple[list[int], list[float]]]:
    """Item point id -> (indices, values) of its sparse vector; ``point_ids[i]`` is row/column ``i``'s id.

    Items whose column is empty get no entry (only other lists can return them)."""
    w = sp.csc_matrix(weights)
    ids = _point_ids(point_ids, w.shape[0])
    out: dict[int, tuple[list[int], list[float]]] = {}
    for j in range(w.shape[1]):
        start, end = w.indptr[j], w.indptr[j + 1]
        if end > start:
            out[int(ids[j])] = (ids[w.indices[start:end]].tolist(), w.data[start:end].astype(float).tolist())
    return out


def query_sparse_vector(history: dict[int, float]) -> tuple[list[int], list[float]]:
    """The query sparse vector of a history ``{item point id: weight}``, scaled to unit L1 norm (zero
    weights dropped; ids sorted)."""
    items = sorted(i for i, w in history.items() if w != 0)
    total = float(sum(abs(history[i]) for i in items))
    if total <= 0:
        return [], []
    _point_ids(items, len(items))
    return items, [history[i] / total for i in items]


def _point_ids(point_ids: ArrayLike, n: int) -> NDArray[np.int64]:
    ids = np.asarray(point_ids, dtype=np.int64)
    if ids.shape != (n,):
        raise ValueError(f"expected {n} point ids, got shape {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() > MAX_SPARSE_INDEX):
        raise ValueError("point ids must fit an unsigned 32-bit sparse index")
    return ids
