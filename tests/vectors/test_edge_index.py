"""The embedded store builds its HNSW index in a child process while this one keeps answering: queries give
the same filtered, exclusion-safe answers before, during and after the build, and writes made during the
build survive the switch to the built shard (and a reopen).

The points written during the build sit within 0.05 sigma of the query, so their cosines to it are ~0.9998
and neighbours differ by ~1e-7, below float32 resolution: the engine (float32, normalised vectors) and numpy
may order such near-ties differently. Answers are therefore compared by true (float64) score within a
float32 tolerance, and the writes themselves are checked point by point (present, current vector)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nearrec.filters import And, Eq, FieldType
from nearrec.vectors.base import Hit, PointRecord
from nearrec.vectors.edge import EdgeVectorStore
from nearrec.vectors.edge_index import BuildReport
from nearrec.vectors.payload import META_SEARCH

DIM = 16
N = 4000
COL = "items"
TIE = 2e-6  # float32 rounding of a cosine near 1 (a few ulps of 6e-8)


def _point(i: int, vec: Any) -> PointRecord:
    return PointRecord(i, {"text": vec}, {"category": f"c{i % 4}", "active": 1})


def _exact(vecs: dict[int, Any], query: Any, category: str, banned: set[int], k: int) -> list[int]:
    ids = [i for i in vecs if i % 4 == int(category[1:]) and i not in banned]
    mat = np.stack([vecs[i] for i in ids])
    scores = mat @ query / (np.linalg.norm(mat, axis=1) * np.linalg.norm(query))
    return [ids[j] for j in np.argsort(-scores)[:k]]


def _cosine(vec: Any, query: Any) -> float:
    v, q = vec.astype(np.float64), query.astype(np.float64)
    return float(v @ q / (np.linalg.norm(v) * np.linalg.norm(q)))


def _assert_exact(hits: list[Hit], vecs: dict[int, Any], query: Any, banned: set[int]) -> None:
    """``hits`` is the exact filtered top-k of ``vecs`` up to float32 rounding: each hit is a live c1 point,
    not banned, scored on its current vector, and no point scores clearly better than the k-th hit."""
    want = _exact(vecs, query, "c1", banned, len(hits) or 10)
    assert len(hits) == len(want)
    for h in hits:
        assert h.id in vecs and h.id % 4 == 1 and h.id not in banned
        assert abs(h.score - _cosine(vecs[h.id], query)) < 1e-5, h.id
    got = [h.id for h in hits]
    worst = min(_cosine(vecs[i], query) for i in got)
    missed = [i for i in want if i not in got and _cosine(vecs[i], query) > worst + TIE]
    assert not missed, (got, want)


def _assert_stored(store: EdgeVectorStore, vecs: dict[int, Any]) -> None:
    """Every acknowledged write is there with its current vector, and nothing else is."""
    assert store.count(COL) == len(vecs)
    hits = store.retrieve(COL, sorted(vecs), with_vectors=True)
    assert [h.id for h in hits] == sorted(vecs)
    for h in hits:
        assert h.vector is not None
        unit = vecs[h.id] / np.linalg.norm(vecs[h.id])
        assert np.allclose(h.vector["text"], unit, atol=1e-5), h.id
        assert h.payload["category"] == f"c{h.id % 4}"


def test_queries_and_writes_go_on_during_a_background_index_build(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vecs = {i: rng.standard_normal(DIM).astype(np.float32) for i in range(1, N + 1)}
    store = EdgeVectorStore(tmp_path / "v", indexing_threshold_kb=40)  # ~600 vectors of 16 floats
    store.ensure_collection(COL, {"text": DIM})
    store.ensure_index(COL, "category", FieldType.KEYWORD)
    store.upsert(COL, [_point(i, v) for i, v in vecs.items()])
    query = rng.standard_normal(DIM).astype(np.float32)
    banned = set(range(1, 400, 4))  # category c1 ids, pushed into must_not has_id
    flt = And((Eq("active", 1), Eq("category", "c1")))

    def answer() -> list[int]:
        hits = store.query(COL, query, "text", 10, filter=flt, exclude_ids=sorted(banned))
        return [h.id for h in hits]

    before = answer()
    assert before == _exact(vecs, query, "c1", banned, 10)
    assert store.unindexed_points(COL) == N

    report: list[BuildReport] = []
    builder = threading.Thread(target=lambda: report.append(store.build_index(COL)))
    builder.start()
    during: list[list[int]] = []
    written = N
    while builder.is_alive():
        during.append(answer())
        written += 1  # a write during the build: a new c1 point right at the query, and a deletion
        near = query + 0.05 * rng.standard_normal(DIM)  # c1 points near the query: they must show up
        vecs[written] = (near if written % 4 == 1 else rng.standard_normal(DIM)).astype(np.float32)
        store.upsert(COL, [_point(written, vecs[written])])
        gone = 2 * (written - N) + 1000
        store.delete(COL, [gone])
        vecs.pop(gone, None)
    builder.join()
    assert report and report[0].points == N
    assert len(during) > 3, "queries were blocked during the build"
    for got in during:
        assert len(got) == 10 and not set(got) & banned and all(i % 4 == 1 for i in got)

    assert store.unindexed_points(COL) < N  # the built shard has an HNSW graph
    _assert_stored(store, vecs)  # the writes of the build are there, with their vectors
    _assert_exact(
        store.query(COL, query, "text", 10, filter=flt, exclude_ids=sorted(banned)), vecs, query, banned
    )
    store.close()

    reopened = EdgeVectorStore(tmp_path / "v")
    _assert_stored(reopened, vecs)
    hits = reopened.query(COL, query, "text", 10, filter=flt, exclude_ids=sorted(banned))
    _assert_exact(hits, vecs, query, banned)
    reopened.close()


def test_the_worker_index_builder_starts_one_build_when_enough_is_unindexed(tmp_path: Path) -> None:
    from nearrec.sync.index import IndexBuilder

    rng = np.random.default_rng(5)
    store = EdgeVectorStore(tmp_path / "v", indexing_threshold_kb=40)
    store.ensure_collection(COL, {"text": DIM})
    builder = IndexBuilder(store, [COL, "absent"], min_points=2000)
    store.upsert(COL, [_point(i, rng.standard_normal(DIM)) for i in range(1, 1500)])
    assert builder.maybe_start() is None  # 1,499 unindexed: below the threshold
    store.upsert(COL, [_point(i, rng.standard_normal(DIM)) for i in range(1500, 3001)])
    assert builder.maybe_start() == COL
    builder.join(120)
    assert store.unindexed_points(COL) < 3000
    record = store.get_metadata(COL)[META_SEARCH]  # the search effort was calibrated right after the build
    assert record["indexed"] == store.indexed_vectors(COL) > 0 and record["target"] == 0.95
    assert record["vectors"]["text"]["recall"] >= 0.95
    assert builder.maybe_start() is None  # built and calibrated: nothing due until 2,000 more arrive
    assert store.count(COL) == 3000
    store.set_metadata(COL, {META_SEARCH: None})  # e.g. a calibration that failed: the idle worker redoes it
    assert builder.maybe_start() == COL
    builder.join(120)
    assert store.get_metadata(COL)[META_SEARCH]["indexed"] == record["indexed"]
    store.close()


def test_every_kind_of_write_made_during_a_build_survives_the_switch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic: the writes run right after the child's build, before the replay, whatever the load."""
    from nearrec.vectors import edge_index

    rng = np.random.default_rng(7)
    vecs = {i: rng.standard_normal(DIM).astype(np.float32) for i in range(1, N + 1)}
    store = EdgeVectorStore(tmp_path / "v", indexing_threshold_kb=40)
    store.ensure_collection(COL, {"text": DIM})
    store.ensure_index(COL, "category", FieldType.KEYWORD)
    store.upsert(COL, [_point(i, v) for i, v in vecs.items()])
    query = rng.standard_normal(DIM).astype(np.float32)
    banned = set(range(1, 400, 4))

    def write(ids: list[int], near: bool) -> None:
        for i in ids:
            vecs[i] = (query + 0.05 * rng.standard_normal(DIM) if near else rng.standard_normal(DIM)).astype(
                np.float32
            )
        store.upsert(COL, [_point(i, vecs[i]) for i in ids])

    def delete(ids: list[int]) -> None:
        store.delete(COL, ids)
        for i in ids:
            vecs.pop(i, None)

    def writes_during_the_build() -> None:
        write(list(range(N + 1, N + 3001)), near=False)  # new points, many chunks of the replay
        write(list(range(401, 1201, 4)), near=True)  # existing c1 points moved next to the query
        delete(list(range(2, 2001, 2)))  # existing points deleted
        delete([N + 5001, N + 5005])  # ids not written yet: deleted, then written below
        write([N + 5001, N + 5005, N + 3001], near=True)
        delete(list(range(N + 2, N + 1001, 2)))  # points written during this build, deleted again
        write(list(range(N + 1001, N + 1401, 4)), near=True)  # and rewritten
        store.update_vectors(COL, {5: {"text": query}})  # a banned point: must stay out of answers
        vecs[5] = query

    real = edge_index.optimize_copy

    def build_then_write(directory: Path, timeout: float | None = None, rebuild: Any = None) -> None:
        real(directory, timeout, rebuild)
        writes_during_the_build()

    monkeypatch.setattr(edge_index, "optimize_copy", build_then_write)
    report = store.build_index(COL)
    assert report.points == N and report.replayed > 4000
    assert store.unindexed_points(COL) < len(vecs)
    _assert_stored(store, vecs)
    flt = And((Eq("active", 1), Eq("category", "c1")))
    for probe in (query, rng.standard_normal(DIM).astype(np.float32)):
        hits = store.query(COL, probe, "text", 10, filter=flt, exclude_ids=sorted(banned))
        _assert_exact(hits, vecs, probe, banned)
    store.close()
