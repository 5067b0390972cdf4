"""Unit tests for nearrec.evaluation: metrics against hand-computed values, the leave-one-out splits and
the collaborative model (closed form, fold-in, determinism)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from nearrec.evaluation import metrics
from nearrec.evaluation.split import positive_mask, random_leave_one_out, temporal_leave_one_out
from nearrec.model.cf import CFConfig, fold_in_user, history_matrix, train_cf

# ----------------------------------------------------------------------------------------- metrics


def test_single_relevant_item_at_rank_two() -> None:
    ranked = np.array([[5, 3, 9]])
    rel = [[3]]
    assert metrics.ndcg_at_k(ranked, rel, 3) == pytest.approx(1 / math.log2(3))
    assert metrics.recall_at_k(ranked, rel, 3) == 1.0
    assert metrics.hit_rate(ranked, rel, 3) == 1.0
    assert metrics.mrr(ranked, rel) == 0.5
    # cut off before the hit
    assert metrics.ndcg_at_k(ranked, rel, 1) == 0.0
    assert metrics.hit_rate(ranked, rel, 1) == 0.0
    assert metrics.mrr(ranked, rel, k=1) == 0.0


def test_ndcg_with_two_relevant_items_uses_ideal_dcg() -> None:
    ranked = np.array([[9, 1, 2, 5]])
    rel = [[5, 9]]
    dcg = 1.0 + 1.0 / math.log2(5)
    idcg = 1.0 + 1.0 / math.log2(3)
    assert metrics.ndcg_at_k(ranked, rel, 4) == pytest.approx(dcg / idcg)
    assert metrics.recall_at_k(ranked, rel, 2) == 0.5
    assert metrics.recall_at_k(ranked, rel, 4) == 1.0


def test_means_over_users_and_empty_relevant_counts_zero() -> None:
    ranked = np.array([[1, 2], [3, 4], [5, 6]])
    rel: list[list[int]] = [[1], [4], []]
    assert metrics.ndcg_at_k(ranked, rel, 2) == pytest.approx((1.0 + 1 / math.log2(3) + 0.0) / 3)
    assert metrics.hit_rate(ranked, rel, 2) == pytest.approx(2 / 3)
    assert metrics.mrr(ranked, rel) == pytest.approx((1.0 + 0.5) / 3)
    assert metrics.ndcg_per_user(ranked, rel, 2)[2] == 0.0


def test_padding_and_duplicates_never_count_twice() -> None:
    ranked = np.array([[7, 7, -1, -1]])
    assert metrics.hits_matrix(ranked, [[7]]).tolist() == [[True, False, False, False]]
    assert metrics.ndcg_at_k(ranked, [[7, 8]], 4) == pytest.approx(1.0 / (1.0 + 1 / math.log2(3)))
    assert metrics.hit_rate(np.array([[-1, -1]]), [[-1]], 2) == 0.0


def test_catalogue_coverage() -> None:
    ranked = np.array([[1, 2], [2, 3]])
    assert metrics.catalogue_coverage(ranked, 10, 2) == pytest.approx(0.3)
    assert metrics.catalogue_coverage(ranked, 10, 1) == pytest.approx(0.2)


def test_intra_list_diversity() -> None:
    vectors = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    # pairs (0,1): distance 1, (0,2): distance 0, (1,2): distance 1
    assert metrics.intra_list_diversity(np.array([[0, 1, 2]]), vectors, 3) == pytest.approx(2 / 3)
    # second list has one item and is skipped
    assert metrics.intra_list_diversity(np.array([[0, 2, -1], [1, -1, -1]]), vectors, 3) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        metrics.intra_list_diversity(np.array([[0, 5]]), vectors, 2)


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError):
        metrics.ndcg_at_k(np.array([1, 2, 3]), [[1]], 2)
    with pytest.raises(ValueError):
        metrics.ndcg_at_k(np.array([[1, 2]]), [[1], [2]], 2)
    with pytest.raises(ValueError):
        metrics.recall_at_k(np.array([[1, 2]]), [[1]], 0)


# ----------------------------------------------------------------------------------------- split


def _rows() -> dict[str, np.ndarray]:
    # user 1: positives at t=1,2,3 (items 10, 11, 12), a low rating later at t=4 (item 13)
    # user 2: one positive only -> not evaluated
    # user 3: two positives tied at t=5 (items 30, 31) -> the larger id (31) is held out;
    #         an earlier duplicate row of (3, 31) must leave training too
    return {
        "u": np.array([1, 1, 1, 1, 2, 2, 3, 3, 3]),
        "i": np.array([10, 11, 12, 13, 20, 21, 30, 31, 31]),
        "v": np.array([5, 4, 4, 2, 5, 1, 4, 5, 4]),
        "t": np.array([1, 2, 3, 4, 1, 2, 5, 5, 0]),
    }


def test_temporal_split_holds_out_last_positive() -> None:
    r = _rows()
    s = temporal_leave_one_out(r["u"], r["i"], r["t"], positive_mask(r["v"], 4.0))
    assert s.test_users.tolist() == [1, 3]
    assert s.test_items.tolist() == [12, 31]
    assert s.test_rows.tolist() == [2, 7]
    assert s.train_mask.tolist() == [True, True, False, True, True, True, True, False, False]
    assert s.n_test == 2


def test_temporal_split_min_positives_and_validation_fold() -> None:
    r = _rows()
    pos = positive_mask(r["v"], 4.0)
    s = temporal_leave_one_out(r["u"], r["i"], r["t"], pos, min_positives=3)
    assert s.test_users.tolist() == [1]
    m = s.train_mask
    val = temporal_leave_one_out(r["u"][m], r["i"][m], r["t"][m], pos[m], min_positives=2)
    assert val.test_users.tolist() == [1, 3]
    assert val.test_items.tolist() == [11, 31]


def test_positive_mask_with_types() -> None:
    mask = positive_mask([5, 5, 3], 4.0, types=["rating", "click", "rating"], positive_types={"rating"})
    assert mask.tolist() == [True, False, False]
    with pytest.raises(ValueError):
        positive_mask([5], 4.0, positive_types={"rating"})


def test_random_split_is_seeded_and_picks_a_positive() -> None:
    rng = np.random.default_rng(1)
    users = rng.integers(0, 30, 600)
    items = rng.integers(0, 50, 600)
    values = rng.integers(1, 6, 600)
    pos = positive_mask(values, 4.0)
    a = random_leave_one_out(users, items, pos, seed=7)
    b = random_leave_one_out(users, items, pos, seed=7)
    c = random_leave_one_out(users, items, pos, seed=8)
    assert np.array_equal(a.test_rows, b.test_rows) and np.array_equal(a.train_mask, b.train_mask)
    assert not np.array_equal(a.test_rows, c.test_rows)
    assert pos[a.test_rows].all()
    assert np.array_equal(users[a.test_rows], a.test_users)
    counts = np.bincount(users[pos], minlength=30)
    assert a.test_users.tolist() == np.flatnonzero(counts >= 2).tolist()
    assert not a.train_mask[a.test_rows].any()


# ----------------------------------------------------------------------------------------- cf


def test_history_weights_recency_values_and_duplicates() -> None:
    cfg = CFConfig(half_life=1.0, non_positive_weight=0.5)
    # one user: item 0 at t=1 (r5), item 1 at t=2 (r2), item 2 at t=3 (r4), item 0 again at t=4 (r5)
    h = history_matrix([0, 0, 0, 0], [0, 1, 2, 0], [5, 2, 4, 5], [1, 2, 3, 4], 1, 3, cfg).toarray()[0]
    # after dedup (item 0 newest at t=4): order item1, item2, item0 -> positions from newest 2, 1, 0
    assert h.tolist() == pytest.approx([1.0, 0.25 * 0.5, 0.5])


def _random_interactions(seed: int, n_users: int, n_items: int, n: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, n_users, n),
        rng.integers(0, n_items, n),
        rng.integers(1, 6, n).astype(float),
        rng.integers(0, 10_000, n),
    )


@pytest.mark.parametrize("rank", [5, 39])  # 5 uses the sparse solver, 39 the dense fallback
def test_cf_matches_closed_form_low_rank_ridge(rank: int) -> None:
    n_users, n_items = 60, 40
    u, i, v, t = _random_interactions(0, n_users, n_items, 500)
    cfg = CFConfig(rank=rank, regularization=3.0, half_life=4.0, non_positive_weight=0.5)
    model = train_cf(u, i, v, t, n_users=n_users, n_items=n_items, config=cfg)
    assert model.distance == "Dot" and model.dim == rank
    x = sp.csr_matrix((np.ones(u.size), (u, i)), shape=(n_users, n_items)).toarray()
    x[x > 0] = 1.0
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    b = vt[:rank].T @ np.diag(s[:rank] ** 2 / (s[:rank] ** 2 + 3.0)) @ vt[:rank]
    h = history_matrix(u, i, v, t, n_users, n_items, cfg).toarray()
    expected = h @ b
    got = model.user_factors.astype(np.float64) @ model.item_factors.T.astype(np.float64)
    assert np.allclose(got, expected, atol=1e-4)


def test_fold_in_of_a_user_equals_training_factors_and_is_deterministic() -> None:
    n_users, n_items = 50, 30
    u, i, v, t = _random_interactions(3, n_users, n_items, 400)
    cfg = CFConfig(rank=6, regularization=1.0, half_life=3.0)
    m1 = train_cf(u, i, v, t, n_users=n_users, n_items=n_items, config=cfg, seed=11)
    m2 = train_cf(u, i, v, t, n_users=n_users, n_items=n_items, config=cfg, seed=11)
    assert np.array_equal(m1.item_factors, m2.item_factors)
    sel = u == 7
    vec = fold_in_user(m1.item_factors, i[sel], v[sel], t[sel], cfg)
    assert np.allclose(vec, m1.user_factors[7], atol=1e-5)
    # only the history rows of the item matrix are needed (as retrieved from the vector store)
    hist_items = np.unique(i[sel])
    local = np.searchsorted(hist_items, i[sel])
    vec_local = fold_in_user(m1.item_factors[hist_items], local, v[sel], t[sel], cfg)
    assert np.allclose(vec_local, vec, atol=1e-6)


def test_cf_recommends_from_the_right_cluster() -> None:
    # two disjoint communities: users 0-19 watch items 0-9, users 20-39 watch items 10-19
    rng = np.random.default_rng(5)
    rows = [(uu, it) for uu in range(40) for it in rng.choice(10, 6, replace=False) + (0 if uu < 20 else 10)]
    u = np.array([r[0] for r in rows])
    i = np.array([r[1] for r in rows])
    model = train_cf(u, i, np.full(u.size, 5.0), None, n_users=40, n_items=20, config=CFConfig(rank=4))
    vec = fold_in_user(model.item_factors, [12, 13], [5.0, 5.0], [1, 2], model.config)
    scores = model.item_factors @ vec
    scores[[12, 13]] = -np.inf
    assert set(np.argsort(-scores)[:5].tolist()) <= set(range(10, 20))
