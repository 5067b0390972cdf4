"""The embedded store builds its HNSW index in a child process while this one keeps answering: queries give
the same filtered, exclusion-safe answers before, during and after the build, and writes made during the
build survive the switch to the built shard (and a reopen)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from nearrec.filters import And, Eq, FieldType
from nearrec.vectors.base import PointRecord
from nearrec.vectors.edge import EdgeVectorStore
from nearrec.vectors.edge_index import BuildReport

DIM = 16
N = 4000
COL = "items"


def _point(i: int, vec: Any) -> PointRecord:
    return PointRecord(i, {"text": vec}, {"category": f"c{i % 4}", "active": 1})


def _exact(vecs: dict[int, Any], query: Any, category: str, banned: set[int], k: int) -> list[int]:
    ids = [i for i in vecs if i % 4 == int(category[1:]) and i not in banned]
    mat = np.stack([vecs[i] for i in ids])
    scores = mat @ query / (np.linalg.norm(mat, axis=1) * np.linalg.norm(query))
    return [ids[j] for j in np.argsort(-scores)[:k]]


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

    after = answer()
    assert store.unindexed_points(COL) < N  # the built shard has an HNSW graph
    assert after == _exact(vecs, query, "c1", banned, 10)  # the writes of the build are there
    assert store.count(COL) == len(vecs)
    store.close()

    reopened = EdgeVectorStore(tmp_path / "v")
    assert reopened.count(COL) == len(vecs)
    assert [
        h.id for h in reopened.query(COL, query, "text", 10, filter=flt, exclude_ids=sorted(banned))
    ] == after
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
    assert builder.maybe_start() is None  # built: nothing due until 2,000 more arrive
    assert store.count(COL) == 3000
    store.close()
