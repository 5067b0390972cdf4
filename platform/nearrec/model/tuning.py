"""Self-tuning of the ranking model on a validation split carved from the training interactions. No I/O.

:func:`~nearrec.model.validation.carve_validation` holds out one positive per user; :func:`tune` then
searches, within ``budget`` seconds, on validation NDCG@10 (seen items excluded, as served):

1. the family and its main parameter: EASE over a log grid of lambda (0.1 ... 10,000, refined around the
   best), the sparse item-kNN variant (neighbours), and the low-rank ridge model (rank x lambda);
2. for the best configuration of each family: the treatment of non-positive interactions (low ratings,
   negative types: dropped, weak or as positives), the weight of each positive interaction type (when there
   are several), and the recency half-life of the history;
3. for the winner: the hybrid text weight (0 allowed), emulating the served weighted RRF fusion of the
   collaborative and text candidate lists (:func:`nearrec.model.validation.rrf_fuse`).

Every candidate is scored the way it is served: item-item weights pruned to ``top_n`` per column.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nearrec.model.ease import MAX_COOCCURRENCE, MAX_DENSE_ITEMS, cooccurrence_bound
from nearrec.model.fitting import SERVE_TOP_N, Fitter
from nearrec.model.validation import Evaluator, TextSide, carve_validation
from nearrec.model.weighting import Family, Interactions, ModelConfig, base_weights, served_config

EASE_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
RIDGE_RANKS = (16, 64, 256)
RIDGE_GRID = (1.0, 10.0, 100.0, 1000.0)
KNN_NEIGHBOURS = (20, 100, 400)
HALF_LIVES: tuple[float | None, ...] = (None, 1.0, 3.0, 10.0, 30.0, 100.0)
LOW_WEIGHTS = (0.0, 0.5, 1.0)
TYPE_WEIGHTS = (0.25, 1.0, 4.0)
TEXT_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0)
SERVE_TOP_NS = (64, 128, 256)
"""Shorter item columns tried for an item-item model (beside SERVE_TOP_N): the sparse index's cost."""
HISTORY_HALF_LIVES = (2, 4, 8)
"""Query lengths tried for an item-item model, in half-lives of the history (beside all of it)."""
WEIGHTED_FAMILIES = 2
"""The best families whose weighting is searched (stage 2)."""


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


Progress = Callable[[str, int, int], None]


class _Search:
    def __init__(self, evaluator: Evaluator, budget: float | None, progress: Progress | None) -> None:
        self.ev = evaluator
        self.budget = budget
        self.started = time.perf_counter()
        self.trials: list[Trial] = []
        self.done: dict[ModelConfig, float] = {}
        self.se: dict[ModelConfig, float] = {}
        self.per_user: dict[ModelConfig, NDArray[np.float64]] = {}
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
        self.per_user[config] = self.ev.last_per_user
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
    best = _serving_stage(search, _prefer_sparse(search, tuned))
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


def _serving_stage(search: _Search, config: ModelConfig) -> ModelConfig:
    """For an item-item model, the cheapest serving not significantly worse than the best (one paired
    standard error): fewer weights per item column (``SERVE_TOP_NS``), then a shorter query (the most recent
    ``HISTORY_HALF_LIVES`` half-lives of the history; older items weigh less than ``2 ** -k``). A sparse
    query's work is about the number of query items times the column length."""
    if config.family == "ridge":
        return config
    columns = [replace(config, top_n=n) for n in sorted(SERVE_TOP_NS) if n <= config.top_n]
    best = _cheapest_within_one_se(search, [config, *columns], "serving")
    if best.half_life is None:
        return best
    lengths = [replace(best, history=math.ceil(k * best.half_life)) for k in sorted(HISTORY_HALF_LIVES)]
    return _cheapest_within_one_se(search, [best, *lengths], "serving")


def _cheapest_within_one_se(search: _Search, options: Sequence[ModelConfig], stage: str) -> ModelConfig:
    """The cheapest of ``options`` (the reference first, then the others cheapest first) whose loss against
    the best of them is within one standard error of that PAIRED difference (the same validation users score both, so
    the difference is measured far more precisely than either mean)."""
    ordered = [*options[1:], options[0]]
    for c in ordered:
        search.run(c, stage)
    scored = [c for c in ordered if c in search.done]
    if not scored:
        return options[0]
    top = search.best(scored)
    for c in scored:
        diff = search.per_user[c] - search.per_user[top]
        se = float(np.std(diff) / np.sqrt(max(diff.size, 1)))
        if float(diff.mean()) >= -se:
            return c
    return top


def _applies(family: Family, data: Interactions) -> bool:
    if family == "ease":
        return data.n_items <= MAX_DENSE_ITEMS
    if family == "ridge":
        return min(data.n_users, data.n_items) > 2
    return cooccurrence_bound(data.user_idx) <= MAX_COOCCURRENCE  # knn: its product must fit in memory


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


__all__ = [
    "SERVE_TOP_N",
    "Family",
    "Fitter",
    "Interactions",
    "ModelConfig",
    "TextSide",
    "Trial",
    "TuningResult",
    "base_weights",
    "carve_validation",
    "served_config",
    "tune",
]
