"""Validation of candidates: :func:`carve_validation` holds out, for every user with at least two distinct
positive items, their last positive interaction by time (ties: the later row), or a seeded random positive
when the data has no usable timestamps; every other row of the pair leaves the validation training part too.
:class:`Evaluator` scores a candidate by NDCG@10 on it (seen items excluded, as served), emulating the
served hybrid fusion (:func:`rrf_fuse`) when the candidate has a text weight. No I/O."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from nearrec.model.ease import binary_matrix, decayed_history
from nearrec.model.fitting import Fitter, Scorer
from nearrec.model.weighting import Interactions, ModelConfig, history

K = 10
RRF_K = 60
"""Qdrant's RRF k (see nearrec.vectors.base.RRF_K)."""
MAX_VALIDATION_USERS = 5000
"""Validation users scored at most (a seeded sample beyond it): a time bound on huge data sets."""


@dataclass(frozen=True)
class Validation:
    train_mask: NDArray[np.bool_]
    users: NDArray[np.int64]
    items: NDArray[np.int64]
    rows: NDArray[np.int64]
    temporal: bool


def carve_validation(data: Interactions, seed: int = 0) -> Validation:
    """Hold out one positive per user with >= 2 distinct positive items (see the module docstring)."""
    n = data.user_idx.size
    rows = np.arange(n)
    temporal = data.timestamps is not None and np.unique(data.timestamps).size > 1
    rng = np.random.default_rng(seed)
    key = data.timestamps if temporal and data.timestamps is not None else rng.random(n)
    pos = np.flatnonzero(data.positive)
    order = pos[np.lexsort((rows[pos], key[pos], data.user_idx[pos]))]
    u = data.user_idx[order]
    last = np.flatnonzero(np.r_[u[1:] != u[:-1], True])  # the newest positive of each user
    distinct: dict[int, set[int]] = {}
    for user, item in zip(data.user_idx[pos].tolist(), data.item_idx[pos].tolist(), strict=True):
        distinct.setdefault(user, set()).add(item)
    chosen = [int(order[i]) for i in last if len(distinct[int(u[i])]) >= 2]
    held = np.asarray(chosen, dtype=np.int64)
    users, items = data.user_idx[held], data.item_idx[held]
    pair = data.user_idx * data.n_items + data.item_idx
    train_mask = ~np.isin(pair, users * data.n_items + items)
    sort = np.argsort(users, kind="stable")
    return Validation(train_mask, users[sort], items[sort], held[sort], bool(temporal))


def ndcg_of_targets(
    scores: NDArray[np.float64], seen: sp.csr_matrix, targets: NDArray[np.int64]
) -> NDArray[np.float64]:
    """NDCG@10 per row with one relevant item: ``1 / log2(rank + 2)`` when ranked < 10 among unseen items
    (ties count against the target)."""
    s = scores.copy()
    s[seen.nonzero()] = -np.inf
    target = s[np.arange(s.shape[0]), targets]
    rank = (s >= target[:, None]).sum(axis=1) - 1
    return np.where(np.isfinite(target) & (rank < K), 1.0 / np.log2(rank + 2.0), 0.0)


Ranked = tuple[NDArray[np.int64], NDArray[np.bool_]]
"""A top list per row: item indices best first, and which of them have a finite score."""


def top_ranked(scores: NDArray[np.floating], depth: int) -> Ranked:
    """The top-``depth`` items of each row, best first (ties: stable), as a served list holds them."""
    d = min(depth, scores.shape[1])
    top = np.argpartition(-scores, d - 1, axis=1)[:, :d]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    ranked = np.take_along_axis(top, order, axis=1)
    return ranked, np.isfinite(np.take_along_axis(scores, ranked, axis=1))


def rrf_fuse(
    cf: NDArray[np.float64], text: NDArray[np.float64], weight: float, depth: int
) -> NDArray[np.float64]:
    """Weighted RRF of the top-``depth`` of two score matrices (rows = users), as Qdrant computes it:
    ``sum 1 / ((rank + 1) / w + k - 1)``; items outside a list get nothing from it, outside both -inf."""
    return rrf_fuse_ranked(cf, top_ranked(text, depth) if weight > 0 else None, weight, depth)


def rrf_fuse_ranked(
    cf: NDArray[np.float64], text: Ranked | None, weight: float, depth: int
) -> NDArray[np.float64]:
    """:func:`rrf_fuse` with the text side already ranked (:func:`top_ranked`)."""
    out = np.zeros_like(cf)
    hit = np.zeros(cf.shape, dtype=bool)
    lists = [(top_ranked(cf, depth), 1.0)]
    if text is not None and weight > 0:
        lists.append((text, weight))
    for (ranked, finite), w in lists:
        d = ranked.shape[1]
        contrib = 1.0 / ((np.arange(d) + 1.0) / w + RRF_K - 1.0)
        rows = np.broadcast_to(np.arange(cf.shape[0])[:, None], ranked.shape)
        np.add.at(out, (rows[finite], ranked[finite]), np.broadcast_to(contrib, ranked.shape)[finite])
        hit[rows[finite], ranked[finite]] = True
    out[~hit] = -np.inf
    return out


@dataclass(frozen=True)
class TextSide:
    """What the tuner needs to emulate the hybrid: unit item text vectors (zero rows for unknown items),
    the product's text-history weight of every interaction and its half-life, and the served list depth."""

    item_vectors: NDArray[np.float32]
    history_weights: NDArray[np.float64]
    half_life: float
    depth: int


class Evaluator:
    """Validation NDCG@10 of candidates on one carved split (at most MAX_VALIDATION_USERS users)."""

    def __init__(self, data: Interactions, seed: int = 0, text: TextSide | None = None) -> None:
        self.validation = carve_validation(data, seed)
        mask = self.validation.train_mask
        self.train = data.subset(mask)
        users, items = self.validation.users, self.validation.items
        if users.size > MAX_VALIDATION_USERS:
            pick = np.sort(
                np.random.default_rng(seed).choice(users.size, MAX_VALIDATION_USERS, replace=False)
            )
            users, items = users[pick], items[pick]
        self.users, self.items = users, items
        x = binary_matrix(self.train.user_idx, self.train.item_idx, data.n_users, data.n_items)
        self.seen = sp.csr_matrix(x[users])
        self.fitter = Fitter(self.train, seed)
        self.text = text
        self._text_users: NDArray[np.float32] | None = None
        self._text_ranked: list[Ranked] = []
        self._histories: dict[tuple[object, ...], sp.csr_matrix] = {}
        self.last_se = 0.0
        self.last_per_user: NDArray[np.float64] = np.zeros(0)
        if text is not None:
            w = text.history_weights[mask]
            h = decayed_history(
                self.train.user_idx, self.train.item_idx, w, self.train.timestamps,
                data.n_users, data.n_items, text.half_life,
            )[users]  # fmt: skip
            u = np.asarray(h @ text.item_vectors, dtype=np.float32)
            norms = np.linalg.norm(u, axis=1, keepdims=True)
            self._text_users = np.divide(u, norms, out=np.zeros_like(u), where=norms > 0)

    def _history(self, config: ModelConfig) -> sp.csr_matrix:
        """The validation users' query rows under ``config`` (cached: many candidates share a weighting)."""
        key = (
            config.family == "ridge",
            config.low_weight,
            config.type_weights,
            config.half_life,
            config.history,
        )
        if key not in self._histories:
            if len(self._histories) > 8:
                self._histories.clear()
            self._histories[key] = sp.csr_matrix(history(self.train, config)[self.users])
        return self._histories[key]

    def _chunk(self) -> int:
        return max(1, 2_000_000 // max(self.train.n_items, 1))

    def _text_lists(self) -> list[Ranked]:
        """Each chunk's text list, seen items excluded: ranked once, on the first hybrid candidate."""
        if not self._text_ranked and self.text is not None and self._text_users is not None:
            items = np.asarray(self.text.item_vectors, dtype=np.float32)
            for start in range(0, self.users.size, self._chunk()):
                part = slice(start, start + self._chunk())
                t = np.asarray(self._text_users[part] @ items.T, dtype=np.float64)
                t[sp.csr_matrix(self.seen[part]).nonzero()] = -np.inf
                self._text_ranked.append(top_ranked(t, self.text.depth))
        return self._text_ranked

    def score(self, config: ModelConfig, scorer: Scorer | None = None) -> float:
        scorer = scorer or self.fitter.fit(config, listed=config.text_weight > 0)
        h = self._history(config)
        parts: list[NDArray[np.float64]] = []
        fused = config.text_weight > 0 and self.text is not None and self._text_users is not None
        text_lists = self._text_lists() if fused else []
        for n, start in enumerate(range(0, self.users.size, self._chunk())):
            part = slice(start, start + self._chunk())
            s = scorer(sp.csr_matrix(h[part]))
            seen = sp.csr_matrix(self.seen[part])
            if fused and self.text is not None:
                s[seen.nonzero()] = -np.inf
                s = rrf_fuse_ranked(s, text_lists[n], config.text_weight, self.text.depth)
            parts.append(ndcg_of_targets(s, seen, self.items[part]))
        per_user = np.concatenate(parts) if parts else np.zeros(0)
        n = max(per_user.size, 1)
        mean = float(per_user.sum()) / n
        self.last_se = float(np.sqrt(max(float((per_user**2).sum()) / n - mean**2, 0.0) / n))
        self.last_per_user = per_user
        return mean


__all__ = [
    "Evaluator",
    "TextSide",
    "Validation",
    "carve_validation",
    "ndcg_of_targets",
    "rrf_fuse",
    "rrf_fuse_ranked",
    "top_ranked",
]
