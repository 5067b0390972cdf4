"""Offline baselines for `nearrec evaluate`, in numpy on the same split as the served methods: EASE tuned
on a validation split carved from the training part (the test items are never seen by the tuner), and
popularity (training interactions per item). Full ranking, training items excluded, like the service."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from nearrec.evaluation import metrics
from nearrec.evaluation.split import LeaveOneOutSplit
from nearrec.model import tuning, weighting
from nearrec.model.ease import binary_matrix

Scores = npt.NDArray[np.float64]


def offline_baselines(
    user_codes: npt.NDArray[np.int64],
    item_codes: npt.NDArray[np.int64],
    positive: npt.NDArray[np.bool_],
    timestamps: npt.NDArray[np.float64] | None,
    split: LeaveOneOutSplit,
    k: int,
    seed: int = 0,
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Metrics of ``offline ease`` and ``offline popularity``, and the EASE configuration the tuner chose."""
    n_users = int(user_codes.max()) + 1 if user_codes.size else 0
    n_items = int(item_codes.max()) + 1 if item_codes.size else 0
    mask = split.train_mask
    train = tuning.Interactions(
        user_codes[mask], item_codes[mask], ["rating"] * int(mask.sum()), positive[mask],
        None if timestamps is None else timestamps[mask], n_users, n_items,
    )  # fmt: skip
    seen = sp.csr_matrix(binary_matrix(train.user_idx, train.item_idx, n_users, n_items)[split.test_users])
    relevant = [[int(i)] for i in split.test_items]
    out: dict[str, dict[str, float]] = {}
    result = tuning.tune(train, seed=seed, families=("ease",))
    config = result.best
    scorer = tuning.Fitter(train, seed).fit(config)
    history = weighting.history(train, config)[split.test_users]
    out["offline ease"] = _metrics(scorer(sp.csr_matrix(history)), seen, relevant, k)
    counts = np.bincount(train.item_idx, minlength=n_items).astype(np.float64)
    popular = np.broadcast_to(counts, (split.n_test, n_items)).copy()
    out["offline popularity"] = _metrics(popular, seen, relevant, k)
    return out, {
        "offline_ease": config.to_dict(),
        "offline_ease_validation_ndcg@10": round(result.best_ndcg, 4),
    }


def _metrics(
    scores: Scores, seen: sp.csr_matrix, relevant: Sequence[Sequence[int]], k: int
) -> dict[str, float]:
    s = scores.copy()
    s[seen.nonzero()] = -np.inf
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return {
        f"ndcg@{k}": metrics.ndcg_at_k(top, relevant, k),
        f"recall@{k}": metrics.recall_at_k(top, relevant, k),
        f"hit_rate@{k}": metrics.hit_rate(top, relevant, k),
        f"mrr@{k}": metrics.mrr(top, relevant, k),
    }


__all__ = ["offline_baselines"]
