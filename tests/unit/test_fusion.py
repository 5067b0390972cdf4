"""Hybrid fusion and the cosine serving of the dot-product cf model, checked against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from nearrec.model.fusion import (
    Scored,
    augment_items,
    augment_user,
    dbsf_normalise,
    fuse_dbsf,
    item_factors_from_stored,
    mmr_rerank,
    scale_for,
)


def hits(*pairs: tuple[int, float]) -> list[Scored]:
    return [Scored(i, s) for i, s in pairs]


def test_dbsf_normalise_matches_the_formula() -> None:
    # mean 2, sample sd 1: (s - (2 - 3)) / 6
    assert dbsf_normalise([1.0, 2.0, 3.0]) == pytest.approx([2 / 6, 3 / 6, 4 / 6])
    assert dbsf_normalise([5.0]).tolist() == [0.5]
    assert dbsf_normalise([2.0, 2.0]).tolist() == [0.5, 0.5]


def test_fuse_weighted_sum_with_missing_items_at_zero() -> None:
    cf = hits((1, 3.0), (2, 2.0), (3, 1.0))  # norms 4/6, 3/6, 2/6
    text = hits((3, 0.9), (4, 0.5))  # mean .7, sd .2828: 3 -> 0.5 + .2/(6*.2828), 4 -> 0.5 - ...
    fused = fuse_dbsf([(cf, 1.0), (text, 0.2)])
    sd = float(np.std([0.9, 0.5], ddof=1))
    z3, z4 = (0.9 - (0.7 - 3 * sd)) / (6 * sd), (0.5 - (0.7 - 3 * sd)) / (6 * sd)
    expected: dict[int, float] = {1: 4 / 6, 2: 3 / 6, 3: 2 / 6 + 0.2 * z3, 4: 0.2 * z4}
    assert {h.id: h.score for h in fused} == pytest.approx(expected)
    assert [h.id for h in fused] == sorted(expected, key=lambda i: -expected[i])


def test_fuse_breaks_ties_by_id_and_counts_duplicates_once() -> None:
    fused = fuse_dbsf([(hits((7, 1.0), (5, 1.0), (7, 1.0)), 1.0)])
    assert [h.id for h in fused] == [5, 7]
    assert fuse_dbsf([(hits((1, 2.0), (2, 1.0)), 1.0)], limit=1)[0].id == 1
    assert fuse_dbsf([]) == []


def test_text_weight_can_reorder_the_cf_list() -> None:
    cf = hits((1, 1.0), (2, 0.99), (3, 0.0))
    text = hits((2, 1.0), (1, 0.0), (3, 0.5))
    assert [h.id for h in fuse_dbsf([(cf, 1.0), (text, 0.0)])][:2] == [1, 2]
    assert [h.id for h in fuse_dbsf([(cf, 1.0), (text, 0.5)])][:2] == [2, 1]


def test_augmentation_keeps_the_dot_product_ranking() -> None:
    rng = np.random.default_rng(0)
    q = rng.normal(size=(50, 8)).astype(np.float32)
    q[3] *= 5  # a very popular item: large norm
    scale = scale_for(q)
    items = augment_items(q, scale)
    assert np.allclose(np.linalg.norm(items, axis=1), 1.0, atol=1e-5)
    for _ in range(5):
        u = rng.normal(size=8).astype(np.float32)
        query = augment_user(u)
        cosine = items @ query / np.linalg.norm(query)
        assert list(np.argsort(-cosine)) == list(np.argsort(-(q @ u)))
    assert np.allclose(item_factors_from_stored(items, scale), q, atol=1e-5)


def test_augment_rejects_a_scale_below_a_norm() -> None:
    with pytest.raises(ValueError):
        augment_items(np.array([[3.0, 4.0]]), 4.0)
    assert scale_for(np.zeros((2, 3))) == 1.0


def test_mmr_zero_diversity_is_relevance_order_and_high_diversity_spreads() -> None:
    pool = hits((1, 1.0), (2, 0.99), (3, 0.5))
    vectors = {1: [1.0, 0.0], 2: [1.0, 0.0], 3: [0.0, 1.0]}
    assert [h.id for h in mmr_rerank(pool, vectors, 2, 0.0)] == [1, 2]
    assert [h.id for h in mmr_rerank(pool, vectors, 2, 0.7)] == [1, 3]
