"""The collaborative model: training, fold-in and the product's positive rule."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from nearrec.model import cf
from nearrec.model.cf import CFConfig, CFMeta, cf_values, fold_in_user, train_cf
from nearrec.model.user_vector import UserVectorParams
from nearrec.model.weighting import served_config


def blocks() -> tuple[np.ndarray, np.ndarray]:
    """Two communities: users 0-9 like items 0-4, users 10-19 like items 5-9."""
    users, items = [], []
    for u in range(20):
        base = 0 if u < 10 else 5
        for i in range(base, base + 5):
            if (u + i) % 5 != 0:  # leave one item out per user
                users.append(u)
                items.append(i)
    return np.array(users), np.array(items)


def test_cf_recommends_within_the_community_and_is_deterministic() -> None:
    users, items = blocks()
    cfg = CFConfig(rank=4, regularization=1.0, half_life=None)
    model = train_cf(users, items, np.ones(users.size), None, n_users=20, n_items=10, config=cfg, seed=0)
    again = train_cf(users, items, np.ones(users.size), None, n_users=20, n_items=10, config=cfg, seed=0)
    assert np.array_equal(model.item_factors, again.item_factors)
    scores = model.user_factors @ model.item_factors.T
    for u in (0, 3, 12):
        seen = set(items[users == u].tolist())
        unseen = [i for i in range(10) if i not in seen]
        best = max(unseen, key=lambda i: scores[u, i])
        assert (best < 5) == (u < 10)


def test_fold_in_matches_training_user_vectors() -> None:
    users, items = blocks()
    times = np.arange(users.size, dtype=float)
    values = np.where(items % 2 == 0, 5.0, 2.0)
    model = train_cf(users, items, values, times, n_users=20, n_items=10, config=CFConfig(rank=4), seed=0)
    for u in (0, 11):
        rows = users == u
        folded = fold_in_user(model.item_factors, items[rows], values[rows], times[rows], CFConfig(rank=4))
        assert np.allclose(folded, model.user_factors[u], atol=1e-5)


def test_cf_values_follow_the_product_rule_and_meta_round_trips() -> None:
    params = UserVectorParams(
        interaction_weights={"rating": 1.0, "dislike": -1.0, "view": 1.0},
        rating_threshold=4.0,
        half_life=3.0,
        profile_weight=0.3,
    )
    got = cf_values(["rating", "rating", "dislike", "view"], [4.0, 3.0, np.nan, np.nan], params)
    assert got.tolist() == [1.0, 0.0, 0.0, 1.0]
    meta = CFMeta(64, 65, 1.5, 400.0, 10.0, 0.5, "2024-01-01T00:00:00+00:00")
    assert CFMeta.from_metadata({"cf": meta.to_metadata()}) == meta
    assert CFMeta.from_metadata({}) is None
    assert served_config(meta).low_weight == 0.5 and served_config(meta).family == "ridge"


def test_randomized_svd_matches_the_exact_one_on_a_taste_matrix() -> None:
    """Large catalogs take the randomized path: its top singular values and vectors match LAPACK's."""
    rng = np.random.default_rng(3)
    taste = rng.standard_normal((600, 8)) @ rng.standard_normal((8, 900))
    x = sp.csr_matrix((taste + rng.standard_normal(taste.shape) > 2.0).astype(np.float64))
    s, vt = cf._randomized_svd(x, 20, seed=0)
    _, s_exact, vt_exact = np.linalg.svd(x.toarray(), full_matrices=False)
    np.testing.assert_allclose(s, s_exact[:20], rtol=0.02)
    assert np.all(np.diff(s) <= 0)
    # The leading (well separated) components are the same directions, up to sign.
    alignment = np.abs(np.sum(vt[:8] * vt_exact[:8], axis=1))
    assert np.all(alignment > 0.99), alignment
