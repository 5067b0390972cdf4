"""The item-item serving cost the tuner chooses (column length, query length) round-trips to serving."""

from __future__ import annotations

import numpy as np

from nearrec.model.cf import CFMeta
from nearrec.model.ease import decayed_history
from nearrec.model.weighting import ModelConfig, served_config


def test_max_items_keeps_the_most_recent_distinct_items() -> None:
    items = [5, 1, 5, 2, 3]  # item 5 twice: only its newest event counts
    full = decayed_history(np.zeros(5, int), items, np.ones(5), [1, 2, 3, 4, 5], 1, 6, 2.0).toarray()[0]
    cut = decayed_history(np.zeros(5, int), items, np.ones(5), [1, 2, 3, 4, 5], 1, 6, 2.0, 2).toarray()[0]
    assert np.flatnonzero(full).tolist() == [1, 2, 3, 5]  # newest first: 3, 2, 5, 1
    assert np.flatnonzero(cut).tolist() == [2, 3]  # the two newest distinct items
    np.testing.assert_allclose(cut[[2, 3]], full[[2, 3]])  # kept weights are unchanged


def test_serving_choices_round_trip_through_the_model_record() -> None:
    config = ModelConfig(family="ease", regularization=3.0, top_n=128, history=40)
    assert ModelConfig.from_dict(config.to_dict()) == config
    meta = CFMeta(
        0, 0, 1.0, 3.0, 10.0, 0.5, "2026-01-01T00:00:00+00:00", family="ease", top_n=128, history=40
    )
    served = served_config(CFMeta.from_metadata({"cf": meta.to_metadata()}) or meta)
    assert (served.top_n, served.history, served.family) == (128, 40, "ease")
    assert "top 128, history 40" in config.label()
