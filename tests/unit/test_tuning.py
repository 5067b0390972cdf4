"""The item-item model math and the self-tuning search, on data where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from nearrec.evaluation.split import temporal_leave_one_out
from nearrec.model import synthetic, tuning, validation
from nearrec.model.ease import (
    EaseSolver,
    binary_matrix,
    item_sparse_vectors,
    prune_columns,
    query_sparse_vector,
)


def as_interactions(log: synthetic.SyntheticLog) -> tuning.Interactions:
    n = len(log)
    return tuning.Interactions(
        log.user_idx,
        log.item_idx,
        ["read"] * n,
        np.ones(n, dtype=bool),
        log.timestamps,
        log.n_users,
        log.n_items,
    )


@pytest.mark.parametrize("make", [synthetic.sequential, synthetic.low_rank])
def test_the_tuner_picks_the_family_that_fits_the_data(make: object) -> None:
    log = make()  # type: ignore[operator]
    result = tuning.tune(as_interactions(log), seed=0)
    assert result.best.family == log.family, result.table()[:5]
    best_by_family: dict[str, float] = {}
    for trial in result.trials:
        family = trial.config.family
        best_by_family[family] = max(best_by_family.get(family, 0.0), trial.ndcg)
    others = [v for f, v in best_by_family.items() if f != log.family]
    assert best_by_family[log.family] > max(others)
    assert [r["chosen"] for r in result.table()].count(True) >= 1
    assert result.table()[0]["chosen"]  # the winner is the best row


def test_ease_weights_are_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    x = sp.csr_matrix((rng.random((30, 12)) < 0.3).astype(float))
    lam = 2.5
    p = np.linalg.inv(x.T @ x + lam * np.eye(12))
    want = np.eye(12) - p / np.diag(p)  # B = I - P diag(1/diag(P))
    np.fill_diagonal(want, 0.0)
    np.testing.assert_allclose(EaseSolver(x).weights(lam), want, atol=1e-8)


def test_pruning_and_sparse_vectors() -> None:
    w = np.array([[0.0, 0.5, -0.9], [0.2, 0.0, 0.1], [-0.3, 0.4, 0.0]])
    pruned = prune_columns(w, 1).toarray()
    np.testing.assert_allclose(pruned, [[0, 0.5, -0.9], [0, 0, 0], [-0.3, 0, 0]], atol=1e-7)
    vectors = item_sparse_vectors(prune_columns(w, 2), [10, 20, 30])
    assert vectors[10] == ([20, 30], pytest.approx([0.2, -0.3]))
    indices, values = query_sparse_vector({30: 1.0, 10: 3.0, 20: 0.0})
    assert indices == [10, 30] and values == pytest.approx([0.75, 0.25])


def test_validation_is_the_last_positive_by_time_else_a_seeded_random_one() -> None:
    users = np.array([0, 0, 0, 1, 1, 2])
    items = np.array([5, 6, 7, 5, 6, 7])
    positive = np.array([True, True, False, True, True, True])
    times = np.array([1.0, 3.0, 9.0, 5.0, 2.0, 1.0])
    data = tuning.Interactions(users, items, ["rating"] * 6, positive, times, 3, 8)
    val = tuning.carve_validation(data)
    assert val.temporal and val.users.tolist() == [0, 1] and val.items.tolist() == [6, 5]
    assert val.train_mask.tolist() == [True, False, True, False, True, True]  # user 2: one positive only
    untimed = tuning.Interactions(users, items, ["rating"] * 6, positive, None, 3, 8)
    a, b = tuning.carve_validation(untimed, seed=3), tuning.carve_validation(untimed, seed=3)
    assert not a.temporal and a.items.tolist() == b.items.tolist()


def test_validation_never_touches_the_evaluation_test_items() -> None:
    """`nearrec evaluate` trains (and so tunes) on its training part only: the validation carved there holds
    out training rows, never an evaluation test pair, and the tuner's fit excludes its own held-out rows."""
    log = synthetic.sequential(n_users=300, n_items=200, seed=1)
    positive = np.ones(len(log), dtype=bool)
    split = temporal_leave_one_out(log.user_idx, log.item_idx, log.timestamps, positive, 2)
    rows = np.flatnonzero(split.train_mask)
    train = as_interactions(log).subset(split.train_mask)
    val = tuning.carve_validation(train)
    test_pairs = set(zip(split.test_users.tolist(), split.test_items.tolist(), strict=True))
    val_pairs = set(zip(val.users.tolist(), val.items.tolist(), strict=True))
    assert val_pairs and not test_pairs & val_pairs
    assert not set(rows[val.rows].tolist()) & set(split.test_rows.tolist())
    evaluator = validation.Evaluator(train)
    fitted = binary_matrix(evaluator.train.user_idx, evaluator.train.item_idx, train.n_users, train.n_items)
    assert all(fitted[u, i] == 0 for u, i in val_pairs)  # held out from the fit too


def test_families_whose_fit_would_not_fit_in_memory_are_not_searched() -> None:
    """A catalog too large for the dense EASE solve and a history too long for the sparse kNN product (the
    100k-item benchmark shape) leaves the ridge model only, instead of an out-of-memory error."""
    from nearrec.model.ease import MAX_COOCCURRENCE, MAX_DENSE_ITEMS, cooccurrence_bound

    users = np.repeat(np.arange(3), 9000)  # 3 users x 9,000 items: bound 3 * 9000^2 = 243M
    assert cooccurrence_bound(users) == 3 * 9000**2 > MAX_COOCCURRENCE
    n = users.size
    big = tuning.Interactions(
        users, np.tile(np.arange(9000), 3), ["view"] * n, np.ones(n, dtype=bool), None, 3, MAX_DENSE_ITEMS + 1
    )
    assert [f for f in ("ease", "knn", "ridge") if tuning._applies(f, big)] == ["ridge"]
    small = as_interactions(synthetic.sequential())
    assert [f for f in ("ease", "knn", "ridge") if tuning._applies(f, small)] == ["ease", "knn", "ridge"]
