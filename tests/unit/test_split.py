"""Leave-one-out splits, checked on hand-made histories."""

from __future__ import annotations

import numpy as np

from nearrec.evaluation.split import positive_mask, random_leave_one_out, temporal_leave_one_out


def test_temporal_holds_out_the_last_positive_and_drops_its_pair() -> None:
    users = [0, 0, 0, 0, 1, 1, 2]
    items = [10, 11, 12, 10, 20, 21, 30]
    times = [1, 2, 3, 0, 5, 5, 1]
    values = [5, 4, 2, 1, 4, 4, 5]
    split = temporal_leave_one_out(users, items, times, positive_mask(values, 4.0))
    # user 0: positives 10 (t1), 11 (t2); the last positive is 11. User 1: tie at t5 -> larger item 21.
    # user 2 has one positive only: not evaluated.
    assert split.test_users.tolist() == [0, 1]
    assert split.test_items.tolist() == [11, 21]
    assert split.train_mask.tolist() == [True, False, True, True, True, False, True]


def test_temporal_drops_every_row_of_the_held_out_pair() -> None:
    split = temporal_leave_one_out([0, 0, 0], [1, 2, 2], [1, 2, 0], [True, True, False])
    assert split.test_items.tolist() == [2]
    assert split.train_mask.tolist() == [True, False, False]


def test_random_split_is_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(1)
    users = rng.integers(0, 20, 400)
    items = rng.integers(0, 50, 400)
    pos = rng.random(400) > 0.3
    a = random_leave_one_out(users, items, pos, seed=3)
    b = random_leave_one_out(users, items, pos, seed=3)
    assert a.test_items.tolist() == b.test_items.tolist()
    assert np.array_equal(a.train_mask, b.train_mask)
    for u, i in zip(a.test_users, a.test_items, strict=True):
        rows = (users == u) & (items == i)
        assert pos[rows].any() and not a.train_mask[rows].any()
