"""Leave-one-out splits for offline evaluation, on plain parallel arrays.

Every function takes parallel 1-D arrays (one entry per interaction row) and returns a
:class:`LeaveOneOutSplit`: a boolean mask of the rows kept for training and, per evaluated user, the one
held-out item. Rows are never copied; callers index their own arrays with the mask.

Protocol (temporal): positives are rows whose value is >= ``threshold`` (optionally restricted to some
interaction types). For each user with at least ``min_positives`` distinct positive items, the LAST
positive by timestamp is held out; timestamp ties are broken by the larger item id, then by the later row,
so the split is fully deterministic. Every other row of that user (positive or not) stays in training and
counts as seen. Any other row for the same (user, held-out item) pair is dropped from training too, so the
held-out item is always an unseen candidate.

Applying the same function to the training rows (``split.train_mask``) gives the validation split used to
tune hyper-parameters without touching the test items.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "LeaveOneOutSplit",
    "positive_mask",
    "random_leave_one_out",
    "temporal_leave_one_out",
]


@dataclass(frozen=True)
class LeaveOneOutSplit:
    """Result of a leave-one-out split.

    Attributes:
        train_mask: bool array over the input rows; True for rows kept as training history.
        test_users: user ids that have a held-out item, sorted ascending (unique).
        test_items: the held-out item of each user in ``test_users``.
        test_rows: the input row index of each held-out interaction.
    """

    train_mask: NDArray[np.bool_]
    test_users: NDArray[np.int64]
    test_items: NDArray[np.int64]
    test_rows: NDArray[np.int64]

    @property
    def n_test(self) -> int:
        """Number of evaluated users."""
        return int(self.test_users.shape[0])


def positive_mask(
    values: ArrayLike,
    threshold: float,
    types: ArrayLike | None = None,
    positive_types: Collection[str] | None = None,
) -> NDArray[np.bool_]:
    """Rows that count as positive: ``value >= threshold`` and, if given, type in ``positive_types``."""
    vals = np.asarray(values, dtype=np.float64)
    mask: NDArray[np.bool_] = vals >= threshold
    if positive_types is not None:
        if types is None:
            raise ValueError("positive_types given without types")
        kinds = np.asarray(types)
        if kinds.shape != vals.shape:
            raise ValueError("types and values must have the same length")
        mask &= np.isin(kinds, np.asarray(sorted(positive_types)))
    return mask


def _as_int_array(name: str, arr: ArrayLike) -> NDArray[np.int64]:
    out = np.asarray(arr)
    if out.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    if not np.issubdtype(out.dtype, np.integer):
        raise ValueError(f"{name} must hold integer ids (map external ids to ints first)")
    return out.astype(np.int64, copy=False)


def _finish(
    users: NDArray[np.int64],
    items: NDArray[np.int64],
    chosen_rows: NDArray[np.int64],
) -> LeaveOneOutSplit:
    """Build the split from one chosen (held-out) row per user, sorted by user."""
    order = np.argsort(users[chosen_rows], kind="stable")
    rows = chosen_rows[order]
    test_users = users[rows]
    test_items = items[rows]
    # Drop every row of a held-out (user, item) pair, not only the held-out row itself.
    n_items = int(items.max()) + 1 if items.size else 1
    held_keys = test_users * n_items + test_items
    row_keys = users * n_items + items
    train_mask = ~np.isin(row_keys, held_keys)
    return LeaveOneOutSplit(train_mask, test_users, test_items, rows)


def _eligible_users(
    pos_users: NDArray[np.int64], pos_items: NDArray[np.int64], min_positives: int
) -> set[int]:
    """Users with at least ``min_positives`` DISTINCT positive items."""
    pairs = np.unique(np.stack([pos_users, pos_items], axis=1), axis=0) if pos_users.size else pos_users
    if pairs.size == 0:
        return set()
    uniq, counts = np.unique(pairs[:, 0], return_counts=True)
    return {int(x) for x in uniq[counts >= min_positives]}


def _check_lengths(*arrays: NDArray[np.generic]) -> None:
    if len({a.shape[0] for a in arrays}) != 1:
        raise ValueError("all input arrays must have the same length")


def temporal_leave_one_out(
    user_ids: ArrayLike,
    item_ids: ArrayLike,
    timestamps: ArrayLike,
    positive: ArrayLike,
    min_positives: int = 2,
) -> LeaveOneOutSplit:
    """Hold out each eligible user's last positive by time (ties: larger item id, then later row).

    Args:
        user_ids: integer user id per row.
        item_ids: integer item id per row (non-negative).
        timestamps: sortable time per row (int epoch seconds, float, or datetime64).
        positive: bool per row, e.g. from :func:`positive_mask`.
        min_positives: users with fewer distinct positive items are not evaluated (all their rows stay in
            training).
    """
    users = _as_int_array("user_ids", user_ids)
    items = _as_int_array("item_ids", item_ids)
    times = np.asarray(timestamps)
    pos = np.asarray(positive, dtype=bool)
    _check_lengths(users, items, times, pos)
    if min_positives < 1:
        raise ValueError("min_positives must be >= 1")
    if items.size and items.min() < 0:
        raise ValueError("item ids must be non-negative")
    rows = np.flatnonzero(pos)
    # lexsort: last key is primary -> sort by user, then time, then item id, then row index.
    order = rows[np.lexsort((rows, items[rows], times[rows], users[rows]))]
    sorted_users = users[order]
    if order.size == 0:
        return _finish(users, items, np.empty(0, dtype=np.int64))
    is_last = np.ones(order.size, dtype=bool)
    is_last[:-1] = sorted_users[1:] != sorted_users[:-1]
    eligible = _eligible_users(users[rows], items[rows], min_positives)
    last_rows = order[is_last]
    chosen = np.array([r for r in last_rows if int(users[r]) in eligible], dtype=np.int64)
    return _finish(users, items, chosen)


def random_leave_one_out(
    user_ids: ArrayLike,
    item_ids: ArrayLike,
    positive: ArrayLike,
    seed: int,
    min_positives: int = 2,
) -> LeaveOneOutSplit:
    """Hold out one positive per eligible user chosen uniformly at random (for data without timestamps).

    The draw depends only on ``seed`` and the row order, so the same inputs give the same split.
    """
    users = _as_int_array("user_ids", user_ids)
    items = _as_int_array("item_ids", item_ids)
    pos = np.asarray(positive, dtype=bool)
    _check_lengths(users, items, pos)
    if min_positives < 1:
        raise ValueError("min_positives must be >= 1")
    if items.size and items.min() < 0:
        raise ValueError("item ids must be non-negative")
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(pos)
    order = rows[np.argsort(users[rows], kind="stable")]
    sorted_users = users[order]
    uniq, starts, counts = np.unique(sorted_users, return_index=True, return_counts=True)
    eligible = _eligible_users(users[rows], items[rows], min_positives)
    keep = np.isin(uniq, np.fromiter(eligible, dtype=np.int64, count=len(eligible)))
    offsets = rng.integers(0, counts[keep])
    chosen = order[starts[keep] + offsets].astype(np.int64)
    return _finish(users, items, chosen)
