"""Self-tuning of the ranking model on a validation split carved from the training interactions. No I/O.

:func:`carve_validation` holds out, for every user with at least two distinct positive items, their last
positive interaction by time (ties: the later row), or a seeded random positive when the data has no
usable timestamps; every other row of the pair leaves the validation training part too. :func:`tune`
then searches, within ``budget`` seconds, on validation NDCG@10 (seen items excluded, as served):

1. the family and its main parameter: EASE over a log grid of lambda (0.1 ... 10,000, refined around the
   best), the sparse item-kNN variant (neighbours), and the low-rank ridge model (rank x lambda);
2. for the best configuration of each family: the treatment of non-positive interactions (low ratings,
   negative types: dropped, weak or as positives), the weight of each positive interaction type (when there
   are several), and the recency half-life of the history;
3. for the winner: the hybrid text weight (0 allowed), emulating the served weighted RRF fusion of the
   collaborative and text candidate lists exactly (:func:`rrf_fuse`).

Every candidate is scored the way it is served: item-item weights pruned to ``top_n`` per column.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

from nearrec.model.cf import CFMeta, _truncated_svd
from nearrec.model.ease import (
    MAX_DENSE_ITEMS,
    EaseSolver,
    binary_matrix,
    decayed_history,
    knn_weights,
    prune_columns,
)

Family = Literal["ease", "knn", "ridge"]
K = 10
RRF_K = 60
"""Qdrant's RRF k (see nearrec.vectors.base.RRF_K)."""
EASE_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
RIDGE_RANKS = (16, 64, 256)
RIDGE_GRID = (1.0, 10.0, 100.0, 1000.0)
KNN_NEIGHBOURS = (20, 100, 400)
HALF_LIVES: tuple[float | None, ...] = (None, 1.0, 3.0, 10.0, 30.0, 100.0)
LOW_WEIGHTS = (0.0, 0.5, 1.0)
TYPE_WEIGHTS = (0.25, 1.0, 4.0)
TEXT_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0)
WEIGHTED_FAMILIES = 2
"""The best families whose weighting is searched (stage 2)."""
SERVE_TOP_N = 512
"""Weights kept per item column when serving item-item models (a sparse-index size bound, not a fit)."""
MAX_VALIDATION_USERS = 5000
"""Validation users scored at most (a seeded sample beyond it): a time bound on huge data sets."""


@dataclass(frozen=True)
class ModelConfig:
    """One candidate. ``low_weight`` is the weight of non-positive interactions in the training matrix and
    the history (0 drops them); ``type_weights`` multiplies positive interactions by type (default 1)."""

    family: Family = "ease"
    regularization: float = 100.0
    rank: int = 64
    neighbours: int = 100
    half_life: float | None = 10.0
    low_weight: float = 0.5
    type_weights: tuple[tuple[str, float], ...] = ()
    text_weight: float = 0.0

    def label(self) -> str:
        main = {
            "ease": f"lambda {self.regularization:g}",
            "knn": f"neighbours {self.neighbours}",
            "ridge": f"rank {self.rank}, lambda {self.regularization:g}",
        }[self.family]
        types = ", ".join(f"{k} x{w:g}" for k, w in self.type_weights if w != 1.0)
        hl = "none" if self.half_life is None else f"{self.half_life:g}"
        extra = f", types {types}" if types else ""
        return f"{self.family} ({main}), half-life {hl}, low {self.low_weight:g}{extra}, text {self.text_weight:g}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "regularization": self.regularization,
            "rank": self.rank,
            "neighbours": self.neighbours,
            "half_life": self.half_life,
            "low_weight": self.low_weight,
            "type_weights": dict(self.type_weights),
            "text_weight": self.text_weight,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ModelConfig:
        return cls(
            family=raw.get("family", "ease"),
            regularization=float(raw.get("regularization", 100.0)),
            rank=int(raw.get("rank", 64)),
            neighbours=int(raw.get("neighbours", 100)),
            half_life=None if raw.get("half_life") is None else float(raw["half_life"]),
            low_weight=float(raw.get("low_weight", 0.5)),
            type_weights=tuple(
                sorted((str(k), float(v)) for k, v in dict(raw.get("type_weights", {})).items())
            ),
            text_weight=float(raw.get("text_weight", 0.0)),
        )


@dataclass(frozen=True)
class Interactions:
    """Training interactions as dense indices. ``positive``: the product's rule (rating >= threshold or a
    type with a positive weight). ``timestamps`` None: no usable time order."""

    user_idx: NDArray[np.int64]
    item_idx: NDArray[np.int64]
    kinds: Sequence[str]
    positive: NDArray[np.bool_]
    timestamps: NDArray[np.float64] | None
    n_users: int
    n_items: int

    def subset(self, mask: NDArray[np.bool_]) -> Interactions:
        return Interactions(
            self.user_idx[mask], self.item_idx[mask], [k for k, m in zip(self.kinds, mask, strict=True) if m],
            self.positive[mask], None if self.timestamps is None else self.timestamps[mask],
            self.n_users, self.n_items,
        )  # fmt: skip


@dataclass(frozen=True)
class Validation:
    train_mask: NDArray[np.bool_]
    users: NDArray[np.int64]
    items: NDArray[np.int64]
    rows: NDArray[np.int64]
    temporal: bool


@dataclass(frozen=True)
class Trial:
    config: ModelConfig
    ndcg: float
    seconds: float
    stage: str


@dataclass
class TuningResult:
    best: ModelConfig
    trials: list[Trial] = field(default_factory=list)
    seconds: float = 0.0
    validation_users: int = 0
    temporal: bool = True
    budget_hit: bool = False

    @property
    def best_ndcg(self) -> float:
        return max((t.ndcg for t in self.trials if t.config == self.best), default=0.0)

    def table(self) -> list[dict[str, Any]]:
        """One row per trial, best first; ``chosen`` marks the winner."""
        rows = sorted(self.trials, key=lambda t: -t.ndcg)
        return [
            {"chosen": t.config == self.best, "stage": t.stage, "config": t.config.label(),
             "ndcg@10": round(t.ndcg, 4), "seconds": round(t.seconds, 2)}
            for t in rows
        ]  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "best": self.best.to_dict(),
            "validation_ndcg@10": round(self.best_ndcg, 4),
            "validation_users": self.validation_users,
            "validation_split": "last positive by time" if self.temporal else "seeded random positive",
            "seconds": round(self.seconds, 2),
            "budget_hit": self.budget_hit,
            "trials": self.table(),
        }


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


def served_config(meta: CFMeta) -> ModelConfig:
    """The history-weighting rule (and family) a served model was fitted with."""
    family: Family = "ridge" if meta.family == "ridge" else ("knn" if meta.family == "knn" else "ease")
    return ModelConfig(
        family=family,
        regularization=meta.regularization,
        rank=meta.rank,
        half_life=meta.half_life,
        low_weight=meta.non_positive_weight,
        type_weights=tuple(sorted(meta.type_weights.items())),
        text_weight=meta.text_weight,
    )


def base_weights(kinds: Sequence[str], positive: ArrayLike, config: ModelConfig) -> NDArray[np.float64]:
    """Per-interaction weight before recency: the type weight if positive, else ``low_weight``."""
    pos = np.asarray(positive, dtype=bool)
    types = dict(config.type_weights)
    if types:
        typed = np.fromiter((types.get(k, 1.0) for k in kinds), dtype=np.float64, count=pos.size)
    else:
        typed = np.ones(pos.size)
    return np.where(pos, typed, config.low_weight)


def history(data: Interactions, config: ModelConfig) -> sp.csr_matrix:
    """Users x items history weights under ``config`` (the query vector of every user)."""
    b = base_weights(data.kinds, data.positive, config)
    return decayed_history(
        data.user_idx, data.item_idx, b, data.timestamps, data.n_users, data.n_items, config.half_life
    )


def training_matrix(data: Interactions, config: ModelConfig) -> sp.csr_matrix:
    """The 0/1 matrix the model is fitted on: interactions with a positive base weight."""
    keep = base_weights(data.kinds, data.positive, config) > 0
    return binary_matrix(data.user_idx[keep], data.item_idx[keep], data.n_users, data.n_items)


Scorer = Callable[[sp.csr_matrix], NDArray[np.float64]]
"""History rows -> dense scores."""


class Fitter:
    """Fits candidates, caching what several candidates share (Gram matrix, SVD) per training matrix."""

    def __init__(self, data: Interactions, seed: int = 0, top_n: int = SERVE_TOP_N) -> None:
        self.data = data
        self.seed = seed
        self.top_n = top_n
        self._cache: dict[tuple[Any, ...], Any] = {}

    def fit(self, config: ModelConfig) -> Scorer:
        if config.family == "ridge":
            q = self.ridge_factors(config)
            return lambda h: np.asarray((h @ q) @ q.T, dtype=np.float64)
        dense = self.item_weights(config).toarray()
        return lambda h: np.asarray(h @ dense, dtype=np.float64)

    def _x(self, config: ModelConfig) -> sp.csr_matrix:
        key = ("x", config.low_weight, config.type_weights)
        if key not in self._cache:
            self._cache[key] = training_matrix(self.data, config)
        x: sp.csr_matrix = self._cache[key]
        return x

    def _solver(self, config: ModelConfig) -> EaseSolver:
        key = ("eig", config.low_weight, config.type_weights)
        if key not in self._cache:
            if len(self._cache) > 8:
                self._cache.clear()
            self._cache[key] = EaseSolver(self._x(config))
        solver: EaseSolver = self._cache[key]
        return solver

    def item_weights(self, config: ModelConfig) -> sp.csc_matrix:
        """Pruned item-item weights (EASE or kNN) as served."""
        if config.family == "knn":
            return knn_weights(self._x(config), min(config.neighbours, self.top_n))
        return prune_columns(self._solver(config).weights(config.regularization), self.top_n)

    def ridge_factors(self, config: ModelConfig) -> NDArray[np.float64]:
        """Item factors ``V_r sqrt(s^2 / (s^2 + lambda))`` (the served dense vectors before augmentation)."""
        if self.data.n_items <= MAX_DENSE_ITEMS:
            return self._solver(config).ridge_factors(config.rank, config.regularization)
        x = self._x(config)
        top = min(max(RIDGE_RANKS), min(x.shape) - 2)
        key = ("svd", config.low_weight, config.type_weights, top)
        if key not in self._cache:
            self._cache[key] = _truncated_svd(x, max(1, top), self.seed)
        s, v = self._cache[key]
        r = min(config.rank, s.size)
        shrink = s[:r] ** 2 / (s[:r] ** 2 + config.regularization)
        return np.asarray(v[:, :r] * np.sqrt(shrink), dtype=np.float64)


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


def rrf_fuse(
    cf: NDArray[np.float64], text: NDArray[np.float64], weight: float, depth: int
) -> NDArray[np.float64]:
    """Weighted RRF of the top-``depth`` of two score matrices (rows = users), as Qdrant computes it:
    ``sum 1 / ((rank + 1) / w + k - 1)``; items outside a list get nothing from it, outside both -inf."""
    out = np.zeros_like(cf)
    hit = np.zeros(cf.shape, dtype=bool)
    for scores, w in ((cf, 1.0), (text, weight)):
        if w <= 0:
            continue
        d = min(depth, scores.shape[1])
        top = np.argpartition(-scores, d - 1, axis=1)[:, :d]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        ranked = np.take_along_axis(top, order, axis=1)
        finite = np.isfinite(np.take_along_axis(scores, ranked, axis=1))
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
        self._text_scores: NDArray[np.float64] | None = None
        self.last_se = 0.0
        if text is not None:
            w = text.history_weights[mask]
            h = decayed_history(
                self.train.user_idx, self.train.item_idx, w, self.train.timestamps,
                data.n_users, data.n_items, text.half_life,
            )[users]  # fmt: skip
            u = np.asarray(h @ text.item_vectors, dtype=np.float64)
            norms = np.linalg.norm(u, axis=1, keepdims=True)
            u = np.divide(u, norms, out=np.zeros_like(u), where=norms > 0)
            self._text_scores = u @ np.asarray(text.item_vectors, dtype=np.float64).T

    def score(self, config: ModelConfig, scorer: Scorer | None = None) -> float:
        scorer = scorer or self.fitter.fit(config)
        h = history(self.train, config)[self.users]
        total = squares = 0.0
        chunk = max(1, 2_000_000 // max(self.train.n_items, 1))
        for start in range(0, self.users.size, chunk):
            part = slice(start, start + chunk)
            s = scorer(sp.csr_matrix(h[part]))
            seen = sp.csr_matrix(self.seen[part])
            if config.text_weight > 0 and self.text is not None and self._text_scores is not None:
                s[seen.nonzero()] = -np.inf
                t = self._text_scores[part].copy()
                t[seen.nonzero()] = -np.inf
                s = rrf_fuse(s, t, config.text_weight, self.text.depth)
            per_user = ndcg_of_targets(s, seen, self.items[part])
            total += float(per_user.sum())
            squares += float((per_user**2).sum())
        n = max(self.users.size, 1)
        mean = total / n
        self.last_se = float(np.sqrt(max(squares / n - mean**2, 0.0) / n))
        return mean


Progress = Callable[[str, int, int], None]


class _Search:
    def __init__(self, evaluator: Evaluator, budget: float | None, progress: Progress | None) -> None:
        self.ev = evaluator
        self.budget = budget
        self.started = time.perf_counter()
        self.trials: list[Trial] = []
        self.done: dict[ModelConfig, float] = {}
        self.se: dict[ModelConfig, float] = {}
        self.progress = progress
        self.budget_hit = False

    def out_of_time(self) -> bool:
        if self.budget is not None and self.trials and time.perf_counter() - self.started > self.budget:
            self.budget_hit = True
        return self.budget_hit

    def run(self, config: ModelConfig, stage: str) -> float:
        if config in self.done:
            return self.done[config]
        if self.out_of_time():
            return -1.0
        mark = time.perf_counter()
        ndcg = self.ev.score(config)
        self.trials.append(Trial(config, ndcg, time.perf_counter() - mark, stage))
        self.done[config] = ndcg
        self.se[config] = self.ev.last_se
        if self.progress is not None:
            self.progress(f"tuning ({stage})", len(self.trials), len(self.trials) + 1)
        return ndcg

    def best(self, configs: Sequence[ModelConfig]) -> ModelConfig:
        scored = [c for c in configs if c in self.done]
        return max(scored, key=lambda c: self.done[c])


def tune(
    data: Interactions,
    *,
    seed: int = 0,
    budget: float | None = None,
    text: TextSide | None = None,
    families: Sequence[Family] = ("ease", "knn", "ridge"),
    progress: Progress | None = None,
) -> TuningResult:
    """Search families and hyper-parameters on a carved validation split (see the module docstring)."""
    started = time.perf_counter()
    ev = Evaluator(data, seed, text)
    if ev.users.size == 0:
        raise ValueError("no user has two distinct positive interactions: nothing to validate on")
    search = _Search(ev, budget, progress)
    found = [_family_stage(search, family) for family in families if _applies(family, data)]
    leaders = [c for c in found if c is not None]
    ranked = sorted(leaders, key=lambda c: -search.done[c])[:WEIGHTED_FAMILIES]
    tuned = [_weighting_stage(search, c, data) for c in ranked]
    best = _prefer_sparse(search, tuned)
    if text is not None:
        for w in TEXT_WEIGHTS:
            search.run(replace(best, text_weight=w), "text")
        best = search.best([replace(best, text_weight=w) for w in TEXT_WEIGHTS])
    return TuningResult(
        best, search.trials, time.perf_counter() - started, int(ev.users.size),
        ev.validation.temporal, search.budget_hit,
    )  # fmt: skip


def _prefer_sparse(search: _Search, configs: Sequence[ModelConfig]) -> ModelConfig:
    """The best configuration, except that an item-item one (served by one sparse query, without fetching the
    history's vectors) wins when it is within one standard error of the best (the one-standard-error rule:
    the difference is not significant, so the cheaper model is taken)."""
    best = search.best(configs)
    sparse = [c for c in configs if c.family != "ridge" and c in search.done]
    if best.family == "ridge" and sparse:
        candidate = search.best(sparse)
        if search.done[candidate] >= search.done[best] - search.se[best]:
            return candidate
    return best


def _applies(family: Family, data: Interactions) -> bool:
    if family == "ease":
        return data.n_items <= MAX_DENSE_ITEMS
    if family == "ridge":
        return min(data.n_users, data.n_items) > 2
    return True


def _family_stage(search: _Search, family: Family) -> ModelConfig | None:
    base = ModelConfig(family=family)
    if family == "ease":
        grid = [replace(base, regularization=lam) for lam in EASE_GRID]
    elif family == "knn":
        grid = [replace(base, neighbours=n) for n in KNN_NEIGHBOURS]
    else:
        grid = [replace(base, rank=r, regularization=lam) for r in RIDGE_RANKS for lam in RIDGE_GRID]
    for config in grid:
        search.run(config, family)
    if not any(c in search.done for c in grid):
        return None
    best = search.best(grid)
    if family in ("ease", "ridge"):  # refine lambda between the grid points
        for f in (10**-0.5, 10**0.5):
            search.run(replace(best, regularization=best.regularization * f), family)
        best = search.best(
            [*grid, *(replace(best, regularization=best.regularization * f) for f in (10**-0.5, 10**0.5))]
        )
    return best


def _weighting_stage(search: _Search, config: ModelConfig, data: Interactions) -> ModelConfig:
    best = config
    if not bool(np.all(data.positive)):
        options = [replace(best, low_weight=w) for w in LOW_WEIGHTS]
        for c in options:
            search.run(c, "weights")
        best = search.best(options)
    positive_types = sorted({k for k, p in zip(data.kinds, data.positive.tolist(), strict=True) if p})
    if len(positive_types) > 1:
        for kind in positive_types:
            options = [_with_type(best, kind, w) for w in TYPE_WEIGHTS]
            for c in options:
                search.run(c, "weights")
            best = search.best([best, *options])
    options = [replace(best, half_life=hl) for hl in HALF_LIVES]
    for c in options:
        search.run(c, "recency")
    return search.best([best, *options])


def _with_type(config: ModelConfig, kind: str, weight: float) -> ModelConfig:
    types = dict(config.type_weights)
    types[kind] = weight
    return replace(config, type_weights=tuple(sorted((k, w) for k, w in types.items() if w != 1.0)))
