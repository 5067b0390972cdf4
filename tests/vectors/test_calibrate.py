"""Self-calibrating search effort (nearrec.vectors.calibrate) on the real engines.

The built collection holds random 1536-d vectors: Qdrant plans a segment holding fewer vectors than its
full-scan threshold (10 MB: ~1,700 such vectors) as an exact scan whatever the graph, so the vectors must be
big for a small test collection to be searched through its graph at all; and random vectors, with no
neighbourhood structure, are where a graph's default effort misses neighbours."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from nearrec.filters import And, Eq, FieldType
from nearrec.vectors.base import Effort, Graph, Hit, PointRecord, stored_efforts
from nearrec.vectors.calibrate import calibrate, calibrate_vector, calibration_due, probes, recall
from nearrec.vectors.edge import EdgeVectorStore
from nearrec.vectors.payload import META_SEARCH
from nearrec.vectors.server import ServerVectorStore
from nearrec.vectors.server_support import EffortCache

DIM = 1536
N = 4000
COL = "items"


def _point(i: int, vec: Any) -> PointRecord:
    return PointRecord(i, {"text": vec}, {"category": f"c{i % 4}", "active": 1})


class Built:
    """An embedded collection with its HNSW graph built (the worker's build path); ``reopen`` swaps the store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        rng = np.random.default_rng(11)
        self.vecs = rng.standard_normal((N, DIM)).astype(np.float32)
        self.store = EdgeVectorStore(root, indexing_threshold_kb=1000)
        self.store.ensure_collection(COL, {"text": DIM})
        self.store.ensure_index(COL, "category", FieldType.KEYWORD)
        self.store.ensure_index(COL, "active", FieldType.INTEGER)
        self.store.upsert(COL, [_point(i + 1, v) for i, v in enumerate(self.vecs)])
        self.store.build_index(COL)

    def reopen(self) -> EdgeVectorStore:
        self.store.close()
        self.store = EdgeVectorStore(self.root)
        return self.store


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    b = Built(tmp_path_factory.mktemp("calibrate") / "v")
    assert b.store.indexed_vectors(COL) == N
    yield b
    b.store.close()


def _answers(store: Any, queries: list[np.ndarray], effort: Effort | None, **kw: Any) -> list[list[Hit]]:
    return [store.query(COL, q, "text", 10, search=effort, **kw) for q in queries]


def _ids(answers: list[list[Hit]]) -> list[list[int]]:
    return [[h.id for h in a] for a in answers]


def test_calibration_raises_ef_to_the_target_records_it_and_queries_use_it(built: Built) -> None:
    store = built.store
    store.set_metadata(COL, {META_SEARCH: None})
    probe, _ = probes(store, COL, "text", 60, seed=3)
    exact = _answers(store, probe, Effort(exact=True))
    assert recall(_answers(store, probe, None), exact, 10) < 0.95, (
        "the default effort must miss neighbours here"
    )
    # a target above the recall at ef 16 (which varies with the build: 0.6-0.78), reached at a small ef, well
    # before the graph costs as much as exact search
    at_16 = recall(_answers(store, probe, Effort(ef=16)), exact, 10)
    target = round(at_16 + 0.1, 2)

    record = calibrate(store, COL, target)
    chosen = record["vectors"]["text"]
    assert record["indexed"] == N and record["target"] == target
    assert chosen["ef"] >= 32 and chosen["recall"] >= target
    assert [step[0] for step in chosen["tried"]][:2] == [16, 32]
    assert store.get_metadata(COL)[META_SEARCH] == record
    assert stored_efforts(store.get_metadata(COL)) == {"text": Effort(ef=chosen["ef"])}

    # queries without an explicit effort use the recorded one: the same answers as asking for it
    with_chosen = _answers(store, probe, Effort(ef=chosen["ef"]))
    assert _ids(_answers(store, probe, None)) == _ids(with_chosen)
    assert recall(with_chosen, exact, 10) > at_16

    reopened = built.reopen()  # the record survives a reopen (collection.json)
    assert reopened.get_metadata(COL)[META_SEARCH] == record
    assert _ids(_answers(reopened, probe, None)) == _ids(with_chosen)


def test_a_recorded_effort_applies_to_fused_and_mmr_queries_too(built: Built) -> None:
    store = built.store
    probe, _ = probes(store, COL, "text", 40, seed=4)
    exact = _answers(store, probe, Effort(exact=True))
    exact_record = {"indexed": N, "target": 1.0, "vectors": {"text": {"exact": True, "recall": 1.0}}}
    store.set_metadata(COL, {META_SEARCH: exact_record})
    try:
        assert _ids(_answers(store, probe, None)) == _ids(exact)
        fused = [store.query_fused(COL, [(q, "text", 1.0)], 10, prefetch_limit=10) for q in probe]
        assert _ids(fused) == _ids(exact)
        mmr = [store.query_mmr(COL, q, "text", 10, diversity=0.0, candidates_limit=10) for q in probe]
        assert [set(a) for a in _ids(mmr)] == [set(a) for a in _ids(exact)]
        store.set_metadata(COL, {META_SEARCH: {**exact_record, "vectors": {"text": {"ef": 16}}}})
        fused = [store.query_fused(COL, [(q, "text", 1.0)], 10, prefetch_limit=10) for q in probe]
        assert recall(fused, exact, 10) < 1.0  # the same requests through the graph at ef 16 miss some
    finally:
        store.set_metadata(COL, {META_SEARCH: None})


def test_filtered_and_excluded_answers_stay_exact_under_a_small_effort(built: Built) -> None:
    """A category (1,000 points) is under the full-scan threshold: the planner scans it, whatever the ef."""
    store = built.store
    store.set_metadata(COL, {META_SEARCH: {"indexed": N, "target": 0.5, "vectors": {"text": {"ef": 16}}}})
    try:
        rng = np.random.default_rng(5)
        unit = built.vecs / np.linalg.norm(built.vecs, axis=1, keepdims=True)
        flt = And((Eq("active", 1), Eq("category", "c1")))
        for _ in range(20):
            q = rng.standard_normal(DIM).astype(np.float32)
            banned = {int(i) for i in rng.choice(np.arange(1, N + 1, 4), 100, replace=False)}
            hits = store.query(COL, q, "text", 10, filter=flt, exclude_ids=sorted(banned))
            scores = unit @ (q / np.linalg.norm(q))
            ids = [i for i in range(1, N + 1) if i % 4 == 1 and i not in banned]
            want = sorted(ids, key=lambda i: -scores[i - 1])[:10]
            assert [h.id for h in hits] == want
    finally:
        store.set_metadata(COL, {META_SEARCH: None})


def test_calibration_is_due_on_a_new_graph_a_changed_target_or_a_grown_graph(built: Built) -> None:
    store = built.store
    store.set_metadata(COL, {META_SEARCH: None})
    assert calibration_due(store, COL, 0.95, 50_000)  # a graph, never calibrated
    store.set_metadata(COL, {META_SEARCH: {"indexed": N, "target": 0.95, "vectors": {}}})
    assert not calibration_due(store, COL, 0.95, 50_000)
    assert calibration_due(store, COL, 0.9, 50_000)  # another target
    store.set_metadata(COL, {META_SEARCH: {"indexed": N - 1000, "target": 0.95, "vectors": {}}})
    assert calibration_due(store, COL, 0.95, 1000)  # 1,000 more vectors in the graph
    assert not calibration_due(store, COL, 0.95, 50_000)  # under min_points and under half the graph
    store.set_metadata(COL, {META_SEARCH: {"indexed": N // 2, "target": 0.95, "vectors": {}}})
    assert calibration_due(store, COL, 0.95, 50_000)  # the graph doubled
    store.set_metadata(COL, {META_SEARCH: None})


def test_no_calibration_without_a_graph(tmp_path: Path) -> None:
    with EdgeVectorStore(tmp_path / "v") as store:  # 300 points: under the indexing threshold, exact
        store.ensure_collection(COL, {"text": 16})
        rng = np.random.default_rng(2)
        store.upsert(COL, [_point(i, rng.standard_normal(16)) for i in range(1, 301)])
        assert store.indexed_vectors(COL) == 0
        assert not calibration_due(store, COL, 0.95, 1000)


def test_probes_are_the_stored_query_vectors_where_there_are_some_and_blends_otherwise(
    tmp_path: Path,
) -> None:
    with EdgeVectorStore(tmp_path / "v") as store:
        rng = np.random.default_rng(8)
        store.ensure_collection(COL, {"text": 8, "cf": 4})
        store.upsert(
            COL,
            [
                PointRecord(i, {"text": rng.standard_normal(8), "cf": rng.standard_normal(4)})
                for i in range(1, 201)
            ],
        )
        store.ensure_collection("users", {"text": 8, "cf": 3})
        users = {i: rng.standard_normal(8) for i in range(1, 31)}
        store.upsert(
            "users", [PointRecord(i, {"text": v, "cf": rng.standard_normal(3)}) for i, v in users.items()]
        )
        stored = {tuple(np.round(v / np.linalg.norm(v), 5)) for v in users.values()}

        got, source = probes(store, COL, "text", 20, queries_from="users")
        assert source == "users" and len(got) == 20
        assert all(tuple(np.round(v, 5)) in stored for v in got)  # the users' own (normalised) vectors
        got, source = probes(store, COL, "text", 50, queries_from="users")  # 30 users, then 20 blends
        assert source == "users + blends" and len(got) == 50
        assert sum(tuple(np.round(v, 5)) in stored for v in got) == 30
        assert all(abs(np.linalg.norm(v) - 1) < 1e-9 for v in got)
        assert probes(store, COL, "cf", 10, queries_from="users")[1] == "blends"  # another size: not queries
        assert probes(store, COL, "text", 10, queries_from="absent")[1] == "blends"
        assert probes(store, COL, "text", 10)[1] == "blends"


def test_the_server_adapter_reads_the_recorded_effort_and_samples(tmp_path: Path) -> None:
    """qdrant-client's local mode (the server adapter's code path; it searches exactly, so ef 16 is enough)."""
    store = ServerVectorStore(QdrantClient(":memory:"))
    try:
        store.ensure_collection(COL, {"text": 16, "cf": 4})
        rng = np.random.default_rng(3)
        points = [PointRecord(i, {"text": rng.standard_normal(16)}, {}) for i in range(1, 201)]
        store.upsert(COL, points)
        store.update_vectors(COL, {i: {"cf": rng.standard_normal(4)} for i in range(1, 51)})
        sample = store.sample(COL, "cf", 80)
        assert len(sample) == 50 and all(h.vector and len(h.vector["cf"]) == 4 for h in sample)
        assert len({h.id for h in store.sample(COL, "text", 30)}) == 30
        assert store.effort(COL, "text") is None
        found = calibrate_vector(store, COL, "text", 0.95, queries=20)
        assert found is not None and found.effort == Effort(ef=16) and found.recall == 1.0
        record = calibrate(store, COL, 0.95, queries=20)
        assert set(record["vectors"]) == {"cf", "text"}
        assert store.effort(COL, "text") == Effort(ef=16)  # set_metadata refreshed the cache
        store.set_alias("items_alias", COL)
        assert store.effort("items_alias", "cf") == Effort(ef=16)
    finally:
        store.close()


def test_the_effort_cache_rereads_the_metadata_after_its_ttl() -> None:
    metadata: dict[str, Any] = {}
    reads: list[str] = []

    def read(name: str) -> dict[str, Any]:
        reads.append(name)
        return metadata

    cache = EffortCache(ttl=3600)
    assert cache.get(COL, "text", read) is None
    metadata[META_SEARCH] = {"vectors": {"text": {"ef": 64}}}
    assert cache.get(COL, "text", read) is None and reads == [COL]  # cached
    cache.clear()
    assert cache.get(COL, "text", read) == Effort(ef=64)
    cache.ttl = 0
    metadata[META_SEARCH] = {"vectors": {"text": {"exact": True}}}
    assert cache.get(COL, "text", read) == Effort(exact=True) and len(reads) == 3


def test_a_graph_that_loses_to_exact_search_is_rebuilt_denser_and_calibrated_again(
    built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's builder: no ef up to MAX_EF reaches the target, so exact search is chosen, the graph is
    rebuilt with m and ef_construct doubled (up to MAX_M) and calibrated again. Last in the module: it leaves
    the shared collection with the denser graph."""
    from nearrec.sync.index import IndexBuilder
    from nearrec.vectors import calibrate as calibration

    monkeypatch.setattr(calibration, "MAX_EF", 64)  # ef 16-64 reach ~0.6-0.8 here
    monkeypatch.setattr(calibration, "MAX_M", 32)  # one rebuild
    store = built.store
    store.set_metadata(COL, {META_SEARCH: None})
    probe, _ = probes(store, COL, "text", 60, seed=6)
    exact = _answers(store, probe, Effort(exact=True))
    sparse_before = recall(_answers(store, probe, Effort(ef=64)), exact, 10)
    assert store.graph(COL) == Graph()

    builder = IndexBuilder(store, [COL], min_points=10**9, target_recall=0.99)
    assert builder.maybe_start() == COL  # a graph, never calibrated
    builder.join(600)
    assert store.graph(COL) == Graph(32, 200)
    record = store.get_metadata(COL)[META_SEARCH]
    assert record["graph"] == [32, 200] and record["vectors"]["text"]["exact"]
    assert not calibration_due(store, COL, 0.99, 10**9)
    assert recall(_answers(store, probe, Effort(ef=64)), exact, 10) > sparse_before  # denser: better per ef
    assert _ids(_answers(store, probe, None)) == _ids(exact)  # the recorded effort: exact search
    assert store.count(COL) == N and store.indexed_vectors(COL) == N

    reopened = built.reopen()  # the parameters are the collection's: kept by a reopen
    assert reopened.graph(COL) == Graph(32, 200)
    assert calibration.needs_denser_graph(record, Graph(32, 200)) is None
    assert calibration.needs_denser_graph({"vectors": {"text": {"ef": 64}}}, Graph()) is None
    assert calibration.needs_denser_graph(record, Graph()) == Graph(32, 200)
