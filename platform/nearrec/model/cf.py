"""Collaborative filtering model, served as the named vector "cf" of the items collection.

Model: low-rank ridge item-item regression (a low-rank EASE without its zero-diagonal constraint).
Let ``X`` be the binary user x item matrix (1 = the user interacted with the item, any value) and
``X ~= U_r diag(s) V_r^T`` its rank-r truncated SVD. The ridge regression
``min_B ||X - XB||^2 + lam ||B||^2`` restricted to that subspace has the closed form
``B = V_r diag(g) V_r^T`` with ``g = s^2 / (s^2 + lam)``. A user with history weights ``h`` (one per item)
scores item ``j`` by ``(hB)_j``. Training is one sparse truncated SVD (no items x items matrix), so it
scales to large catalogues.

Scoring: with item factors ``q_j = V_r[j] * sqrt(g)``, ``(hB)_j = (sum_i h_i q_i) . q_j``, so a user's
factor is the weighted SUM of the factors of the items in their history and the score is a DOT PRODUCT.
The item norm carries popularity (it correlates ~0.94 with log popularity on MovieLens), so ranking by
plain cosine between ``u`` and ``q`` would lose it (NDCG@10 0.116 -> 0.096 there).

Serving: the vector stores are cosine-only. Items are therefore stored augmented, ``[q, sqrt(M^2 -
|q|^2)] / M`` with ``M`` the largest factor norm, and queried with ``[u, 0]``: their cosine is
``q . u / (M |u|)``, which ranks items exactly as the dot product does for any one user (see
:mod:`nearrec.model.fusion`). :class:`CFMeta` records ``M`` and the hyper-parameters, so the query service
recovers ``q`` from the stored vectors and folds in a user at query time without retraining
(:func:`fold_in_user`).

History weights (same rule for training users and new users)::

    w = 0.5 ** (position_from_newest / half_life) * (1 if value >= threshold else non_positive_weight)

where ``position_from_newest`` is 0 for the newest interaction (ties in time: larger item id is newer) and
repeated interactions with one item keep only the newest. Items no one interacted with get a zero vector:
skip upserting their "cf" vector so only the text list can return them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from scipy.sparse.linalg import svds

from nearrec.model.user_vector import UserVectorParams, type_weight

__all__ = [
    "CF_VECTOR",
    "META_CF",
    "CFConfig",
    "CFMeta",
    "CFModel",
    "cf_values",
    "fold_in_user",
    "fold_in_users",
    "history_matrix",
    "train_cf",
]

CF_VECTOR = "cf"
"""Name of the items' collaborative vector in the vector store."""
META_CF = "cf"
"""Key of the :class:`CFMeta` record in the items collection metadata."""
POSITIVE = 1.0
"""Values handed to the model by the product: 1.0 for a positive interaction, else 0.0 (threshold 0.5)."""


@dataclass(frozen=True)
class CFConfig:
    """Hyper-parameters. Defaults were tuned on a MovieLens-100k validation split (see evaluation notes)."""

    rank: int = 64
    regularization: float = 400.0
    half_life: float | None = 10.0
    positive_threshold: float = 4.0
    non_positive_weight: float = 0.5

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError("rank must be >= 1")
        if self.regularization < 0:
            raise ValueError("regularization must be >= 0")
        if self.half_life is not None and self.half_life <= 0:
            raise ValueError("half_life must be > 0 or None")


@dataclass(frozen=True)
class CFModel:
    """Trained factors.

    Attributes:
        item_factors: (n_items, dim) float32, the factor ``q`` of each item (stored augmented).
        user_factors: (n_users, dim) float32, fold-in of each training user's history (zeros if none).
        singular_values: (dim,) singular values of the interaction matrix, descending.
        config: the hyper-parameters used.
        distance: how the model scores a user against an item: always "Dot" (the dot product). The
            store serves it through cosine on augmented vectors (module docstring).
    """

    item_factors: NDArray[np.float32]
    user_factors: NDArray[np.float32]
    singular_values: NDArray[np.float64]
    config: CFConfig
    distance: Literal["Dot"] = field(default="Dot")

    @property
    def dim(self) -> int:
        """Factors per item (the rank; the stored "cf" vector has one dimension more)."""
        return int(self.item_factors.shape[1])


@dataclass(frozen=True)
class CFMeta:
    """What serving needs of a trained model: the ``cf`` entry of the items collection metadata.

    ``scale`` is the augmentation's ``M``; ``dim`` the stored vector size (rank + 1; 0 for a sparse model).
    ``interactions``, ``items`` and ``users`` count what the model was trained on (items: model vectors
    written). ``family`` is the model family (``ridge``, ``ease``, ``knn``), ``vector`` the named vector that
    holds it (``cf<generation>`` dense, ``ii<generation>`` sparse), ``text_weight`` the hybrid text weight
    chosen by the tuner, ``candidates`` the prefetch depth of the fused query, ``type_weights`` the weights of
    positive interaction types, ``tuning`` a summary of the search, ``top_n`` the weights kept per item column and
    ``history`` the most recent items in an item-item query (None: all)."""

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
    family: str = "ridge"
    vector: str = CF_VECTOR
    sparse: bool = False
    generation: int = 0
    text_weight: float = 0.0
    candidates: int = 500
    type_weights: dict[str, float] = field(default_factory=dict)
    tuning: dict[str, Any] | None = None
    top_n: int = 512
    history: int | None = None

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
        """The trained model's record in a collection's metadata, or None when there is none."""
        raw = metadata.get(META_CF)
        if not isinstance(raw, Mapping):
            return None
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in raw.items() if k in names})
        except TypeError:
            return None


def cf_values(types: Sequence[str], values: ArrayLike, params: UserVectorParams) -> NDArray[np.float64]:
    """The product's positive rule as model values: 1.0 where :func:`~nearrec.model.user_vector.type_weight`
    is > 0 (a rating >= ``rating_threshold``, or a type with a positive weight), else 0.0. NaN values mean
    "no value"."""
    vals = np.asarray(values, dtype=np.float64)
    out = np.zeros(vals.shape[0], dtype=np.float64)
    for n, (kind, value) in enumerate(zip(types, vals.tolist(), strict=True)):
        v = None if value != value else value
        if type_weight(kind, v, params) > 0:
            out[n] = POSITIVE
    return out


def _ints(name: str, arr: ArrayLike) -> NDArray[np.int64]:
    out = np.asarray(arr)
    if out.ndim != 1 or (out.size and not np.issubdtype(out.dtype, np.integer)):
        raise ValueError(f"{name} must be a 1-D integer array")
    return out.astype(np.int64, copy=False)


def history_matrix(
    user_idx: ArrayLike,
    item_idx: ArrayLike,
    values: ArrayLike,
    timestamps: ArrayLike | None,
    n_users: int,
    n_items: int,
    config: CFConfig,
) -> sp.csr_matrix:
    """Sparse (n_users x n_items) matrix of history weights, per the rule in the module docstring.

    ``timestamps=None`` means row order is time order.
    """
    users = _ints("user_idx", user_idx)
    items = _ints("item_idx", item_idx)
    vals = np.asarray(values, dtype=np.float64)
    times = np.arange(users.size) if timestamps is None else np.asarray(timestamps)
    if not (users.size == items.size == vals.size == times.size):
        raise ValueError("user_idx, item_idx, values and timestamps must have the same length")
    if users.size == 0:
        return sp.csr_matrix((n_users, n_items), dtype=np.float64)
    if users.min() < 0 or users.max() >= n_users or items.min() < 0 or items.max() >= n_items:
        raise ValueError("user or item index out of range")
    rows = np.arange(users.size)
    # Sort by user, then time, then item id, then row: the newest event of a user is last.
    order = np.lexsort((rows, items, times, users))
    u, i, v = users[order], items[order], vals[order]
    # Keep only the newest event of each (user, item) pair.
    pair = u * n_items + i
    rev_unique = np.unique(pair[::-1], return_index=True)[1]
    keep = np.sort(u.size - 1 - rev_unique)
    u, i, v = u[keep], i[keep], v[keep]
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    counts = np.diff(np.r_[starts, u.size])
    position = np.arange(u.size) - np.repeat(starts, counts)
    from_newest = np.repeat(counts, counts) - 1 - position
    w = np.ones(u.size) if config.half_life is None else 0.5 ** (from_newest / config.half_life)
    w = w * np.where(v >= config.positive_threshold, 1.0, config.non_positive_weight)
    return sp.csr_matrix((w, (u, i)), shape=(n_users, n_items))


def fold_in_users(item_factors: ArrayLike, history: sp.spmatrix | sp.sparray) -> NDArray[np.float32]:
    """User "cf" vectors for many users at once: ``history @ item_factors`` (history from history_matrix)."""
    q = np.asarray(item_factors, dtype=np.float32)
    return np.asarray(sp.csr_matrix(history) @ q, dtype=np.float32)


def fold_in_user(
    item_factors: ArrayLike,
    item_idx: ArrayLike,
    values: ArrayLike,
    timestamps: ArrayLike | None,
    config: CFConfig,
) -> NDArray[np.float32]:
    """The "cf" vector of ONE user from their history, without retraining (query-time fold-in).

    ``item_factors`` may be just the rows of the history items (as retrieved from the vector store) when
    ``item_idx`` indexes into those rows.
    """
    q = np.asarray(item_factors, dtype=np.float32)
    items = _ints("item_idx", item_idx)
    hist = history_matrix(
        np.zeros(items.size, dtype=np.int64), items, values, timestamps, 1, q.shape[0], config
    )
    return fold_in_users(q, hist).reshape(-1)


EXACT_SVD_MAX_SIDE = 5000
"""Past this many users and items (both), the truncated SVD is randomized (ARPACK took minutes at 10k x 100k)."""
POWER_ITERATIONS = 6
"""Subspace iterations of the randomized SVD: each one sharpens the separation of the top singular values."""


def _truncated_svd(x: sp.csr_matrix, rank: int, seed: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Top singular values (descending) and right singular vectors (items x rank), sign-normalised."""
    small = min(x.shape)
    if rank >= small - 1:  # ARPACK needs rank < min(shape) - 1: use the dense SVD
        _, s, vt = np.linalg.svd(x.toarray(), full_matrices=False)
        s, vt = s[:rank], vt[:rank]
    elif small > EXACT_SVD_MAX_SIDE:
        s, vt = _randomized_svd(x, rank, seed)
    else:
        rng = np.random.default_rng(seed)
        v0 = rng.standard_normal(small)
        _, s, vt = svds(x, k=rank, v0=v0, solver="arpack")
        order = np.argsort(-s)
        s, vt = s[order], vt[order]
    v = vt.T.copy()
    # Deterministic signs: the largest-magnitude entry of every component is positive.
    signs = np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])])
    signs[signs == 0] = 1.0
    return s.astype(np.float64), v * signs


def _randomized_svd(
    x: sp.csr_matrix, rank: int, seed: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Halko-Martinsson-Tropp randomized SVD with subspace iteration on ``x x^T``, in float32 (singular
    values descending, right vectors as rows). Only the user side (rows) is orthonormalised: a QR of the
    item side (100k rows) cost more than every sparse product together."""
    xs = x.astype(np.float32)
    xt = xs.T.tocsr()
    width = min(rank + max(16, rank // 4), min(x.shape))
    omega = np.random.default_rng(seed).standard_normal((x.shape[1], width)).astype(np.float32)
    q = _orthonormal(xs @ omega)
    for _ in range(POWER_ITERATIONS):
        q = _orthonormal(xs @ (xt @ q))
    b = np.asarray((xt @ q).T, dtype=np.float64)  # width x items: x projected on the range found
    eig, w = np.linalg.eigh(b @ b.T)  # b's SVD through its small Gram matrix
    top = np.argsort(-eig)[:rank]
    s = np.sqrt(np.maximum(eig[top], 0.0))
    vt = (w[:, top].T @ b) / np.where(s > 0, s, 1.0)[:, None]
    return s, vt


def _orthonormal(y: NDArray[np.float32]) -> NDArray[np.float32]:
    q: NDArray[np.float32] = scipy.linalg.qr(y, mode="economic", overwrite_a=True, check_finite=False)[0]
    return q


def train_cf(
    user_idx: ArrayLike,
    item_idx: ArrayLike,
    values: ArrayLike,
    timestamps: ArrayLike | None,
    *,
    n_users: int,
    n_items: int,
    config: CFConfig | None = None,
    seed: int = 0,
) -> CFModel:
    """Fit the low-rank ridge model on interactions and fold in every training user.

    Args:
        user_idx, item_idx: dense integer indices (0..n_users-1, 0..n_items-1), one per interaction.
        values: interaction value (e.g. rating); every interaction counts in training, the value only
            changes the fold-in weight (``non_positive_weight`` below ``positive_threshold``).
        timestamps: sortable times for the recency weights, or None for row order.
        seed: fixes the start vector of the sparse SVD solver, so results are reproducible.
    """
    cfg = config or CFConfig()
    users = _ints("user_idx", user_idx)
    items = _ints("item_idx", item_idx)
    if users.size == 0:
        raise ValueError("no interactions to train on")
    x = sp.csr_matrix((np.ones(users.size), (users, items)), shape=(n_users, n_items))
    x.data[:] = 1.0  # duplicates summed by the constructor count once
    rank = min(cfg.rank, min(n_users, n_items))
    s, v = _truncated_svd(x, rank, seed)
    shrink = s**2 / (s**2 + cfg.regularization)
    item_factors = (v * np.sqrt(shrink)).astype(np.float32)
    hist = history_matrix(users, items, values, timestamps, n_users, n_items, cfg)
    user_factors = fold_in_users(item_factors, hist)
    return CFModel(item_factors=item_factors, user_factors=user_factors, singular_values=s, config=cfg)
