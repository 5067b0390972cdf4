"""The per-request history row of the served item-item query equals the training-time decayed history."""

from __future__ import annotations

import numpy as np
import pytest

from nearrec.model.ease import decayed_history
from nearrec.postgres.query_repo import TimedEvent
from nearrec.query.collaborative import recent_history


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize(("half_life", "max_items"), [(10.0, 5), (3.0, None), (None, 7), (None, None)])
def test_recent_history_matches_decayed_history(
    seed: int, half_life: float | None, max_items: int | None
) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    # Few items and few distinct times: repeats of an item and ties in time are common; some weights are 0.
    times = np.sort(rng.integers(0, 6, n).astype(float))[::-1]
    events = [TimedEvent(int(rng.integers(0, 12)), "rating", None, float(t)) for t in times]
    weights = rng.choice([0.0, 0.5, 1.0, 2.0], n).tolist()
    got = recent_history(events, weights, half_life, max_items)
    oldest = slice(None, None, -1)
    expected = decayed_history(
        np.zeros(n, dtype=np.int64), [e.item_id for e in events][oldest], np.asarray(weights)[oldest],
        times[oldest], 1, 12, half_life, max_items,
    ).tocoo()  # fmt: skip
    want = {int(c): float(v) for c, v in zip(expected.col, expected.data, strict=True)}
    assert got.keys() == want.keys()
    for item, value in want.items():
        assert got[item] == value  # bit for bit: the served scores are the trained ones
