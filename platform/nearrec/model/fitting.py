"""Fitting candidates on one training matrix, caching what several candidates share (the Gram matrix's
eigendecomposition, the SVD). Item-item weights are pruned to ``top_n`` per column, as served. No I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from nearrec.model.cf import _truncated_svd
from nearrec.model.ease import MAX_DENSE_ITEMS, EaseSolver, knn_weights, listed_scores, prune_columns
from nearrec.model.weighting import Interactions, ModelConfig, training_matrix

SERVE_TOP_N = 512
"""Weights kept per item column when serving item-item models (a sparse-index size bound, not a fit)."""
MAX_SVD_RANK = 256
"""The largest ridge rank searched: one truncated SVD of that rank serves every smaller one."""


Scorer = Callable[[sp.csr_matrix], NDArray[np.float64]]
"""History rows -> dense scores."""


class Fitter:
    """Fits candidates, caching what several candidates share (Gram matrix, SVD) per training matrix."""

    def __init__(self, data: Interactions, seed: int = 0, top_n: int = SERVE_TOP_N) -> None:
        self.data = data
        self.seed = seed
        self.top_n = top_n
        self._cache: dict[tuple[Any, ...], Any] = {}

    def fit(self, config: ModelConfig, listed: bool = False) -> Scorer:
        """The scores of ``config``'s model. ``listed``: as the served list has them, so an item-item model
        gives ``-inf`` to the items its sparse query cannot reach (no weight shared with the history: the
        store's sparse search never returns them), and they come after every reached item, as served."""
        if config.family == "ridge":
            q = self.ridge_factors(config)
            return lambda h: np.asarray((h @ q) @ q.T, dtype=np.float64)
        weights = self.item_weights(config)
        if listed:
            return lambda h: listed_scores(h, weights)
        dense = weights.toarray()
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
            return knn_weights(self._x(config), min(config.neighbours, config.top_n, self.top_n))
        weights = self._solver(config).weights(config.regularization, fast=True)
        return prune_columns(weights, min(config.top_n, self.top_n))

    def ridge_factors(self, config: ModelConfig) -> NDArray[np.float64]:
        """Item factors ``V_r sqrt(s^2 / (s^2 + lambda))`` (the served dense vectors before augmentation)."""
        if self.data.n_items <= MAX_DENSE_ITEMS:
            return self._solver(config).ridge_factors(config.rank, config.regularization)
        x = self._x(config)
        top = min(MAX_SVD_RANK, min(x.shape) - 2)
        key = ("svd", config.low_weight, config.type_weights, top)
        if key not in self._cache:
            self._cache[key] = _truncated_svd(x, max(1, top), self.seed)
        s, v = self._cache[key]
        r = min(config.rank, s.size)
        shrink = s[:r] ** 2 / (s[:r] ** 2 + config.regularization)
        return np.asarray(v[:, :r] * np.sqrt(shrink), dtype=np.float64)


__all__ = ["SERVE_TOP_N", "Fitter", "Scorer"]
