"""The per-request history row of the served item-item query equals the training-time decayed history, and the
per-request interaction weights the training-time ones."""

from __future__ import annotations

import numpy as np
import pytest

from nearrec.model.cf import cf_values
from nearrec.model.ease import decayed_history
from nearrec.model.user_vector import UserVectorParams
from nearrec.model.weighting import ModelConfig, base_weights
from nearrec.postgres.query_repo import History, TimedEvent
from nearrec.query.collaborative import event_weights, recent_history


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
    assert recent_history(History.of(events), weights, half_life, max_items) == got
    oldest = slice(None, None, -1)
    expected = decayed_history(
        np.zeros(n, dtype=np.int64), [e.item_id for e in events][oldest], np.asarray(weights)[oldest],
        times[oldest], 1, 12, half_life, max_items,
    ).tocoo()  # fmt: skip
    want = {int(c): float(v) for c, v in zip(expected.col, expected.data, strict=True)}
    assert got.keys() == want.keys()
    for item, value in want.items():
        assert got[item] == value  # bit for bit: the served scores are the trained ones


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("type_weights", [(), (("purchase", 3.0), ("view", 0.5))])
def test_event_weights_match_the_training_time_weights(
    seed: int, type_weights: tuple[tuple[str, float], ...]
) -> None:
    rng = np.random.default_rng(seed)
    kinds = ["view", "click", "purchase", "rating", "dislike", "unknown"]
    events = [
        TimedEvent(n, str(rng.choice(kinds)), None if rng.random() < 0.5 else float(rng.integers(0, 6)), 0.0)
        for n in range(60)
    ]
    params = UserVectorParams(
        {"view": 1.0, "click": 2.0, "purchase": 4.0, "rating": 3.0, "dislike": -1.0}, 3.0, 10.0, 1.0
    )
    config = ModelConfig(low_weight=float(rng.choice([0.0, 0.25, 0.5])), type_weights=type_weights)
    kinds_of = [e.type for e in events]
    values = [np.nan if e.value is None else e.value for e in events]
    want = base_weights(kinds_of, cf_values(kinds_of, values, params) > 0, config).tolist()
    assert event_weights(events, params, config) == want
    assert event_weights(History.of(events), params, config) == want


@pytest.mark.parametrize("seed", range(10))
def test_history_columns_come_newest_first_whatever_the_aggregate_order(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 30))
    ids = rng.permutation(np.arange(100, 100 + n)).tolist()
    stamps = rng.integers(0, 5, n).astype(float).tolist()  # ties in time: the larger id is the newer
    items, kinds, values = (
        [i * 10 for i in ids],
        [f"t{i}" for i in ids],
        [None if i % 3 else i / 2 for i in ids],
    )
    got = History.newest_first(ids, items, kinds, values, stamps)
    want = sorted(zip(stamps, ids, strict=True), reverse=True)
    assert [e.item_id for e in got] == [i * 10 for _, i in want]
    assert [(e.type, e.value, e.timestamp) for e in got] == [
        (f"t{i}", None if i % 3 else i / 2, t) for t, i in want
    ]
    again = History.newest_first([i for _, i in want], got.item_ids, got.types, got.values, got.timestamps)
    assert again == got  # in order already: the same columns
