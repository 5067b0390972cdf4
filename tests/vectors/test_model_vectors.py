"""The query service's cache of trained item vectors (nearrec.query.retrieval.ModelVectors) on the embedded
engine: served from memory within its time to live, keyed by the model's vector name (a new training is read
afresh at once), items without the vector left out, nothing served once the vector is dropped."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nearrec.query.retrieval import ModelVectors
from nearrec.vectors.base import PointRecord
from nearrec.vectors.edge import EdgeVectorStore

COL = "items"


def _unit(values: list[float]) -> np.ndarray:
    vec = np.asarray(values, dtype=np.float32)
    return vec / np.linalg.norm(vec)


def test_model_vectors_are_cached_per_vector_name_until_they_expire(tmp_path: Path) -> None:
    store = EdgeVectorStore(tmp_path / "v")
    store.ensure_collection(COL, {"text": 4, "cf1": 3, "cf2": 3})
    store.upsert(
        COL,
        [
            PointRecord(1, {"text": [1, 0, 0, 0], "cf1": [1, 2, 2], "cf2": [0, 0, 1]}, {}),
            PointRecord(2, {"text": [0, 1, 0, 0], "cf1": [2, 2, 1]}, {}),
            PointRecord(3, {"text": [0, 0, 1, 0]}, {}),  # not trained: no model vector
        ],
    )
    cache = ModelVectors(ttl=3600.0)
    first = cache.get(store, COL, [1, 2, 3, 4], "cf1")
    assert sorted(first) == [1, 2]
    np.testing.assert_allclose(first[2], _unit([2, 2, 1]), atol=1e-6)

    store.update_vectors(COL, {2: {"cf1": [1, 0, 0]}, 3: {"cf1": [0, 1, 0]}})
    cached = cache.get(store, COL, [1, 2, 3], "cf1")  # within the time to live: memory (item 1 is the probe)
    assert sorted(cached) == [1, 2]
    np.testing.assert_allclose(cached[2], _unit([2, 2, 1]), atol=1e-6)

    other = cache.get(store, COL, [1, 2], "cf2")  # another model: read from the store
    assert sorted(other) == [1]
    np.testing.assert_allclose(other[1], _unit([0, 0, 1]), atol=1e-6)

    expired = ModelVectors(ttl=0.0)
    fresh = expired.get(store, COL, [1, 2, 3], "cf1")
    assert sorted(fresh) == [1, 2, 3]
    np.testing.assert_allclose(fresh[2], _unit([1, 0, 0]), atol=1e-6)

    store.delete_vector(COL, "cf2")  # a later training dropped it: the cache does not outlive the vector
    assert other and cache.get(store, COL, [1, 2], "cf2") == {}

    small = ModelVectors(max_items=1, ttl=3600.0)  # over its size it starts again, answers stay whole
    assert sorted(small.get(store, COL, [1, 2, 3], "cf1")) == [1, 2, 3]
    assert sorted(small.get(store, COL, [3, 2, 1], "cf1")) == [1, 2, 3]
    store.close()
