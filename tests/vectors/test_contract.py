"""One contract for every VectorStore adapter, run on the real engines: qdrant-edge (embedded, in a temp
dir) and qdrant-client's in-process engine (the server adapter's code path). Expected results come from a
numpy brute force plus nearrec.filters.matches, so both engines are checked against the same reference."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

import nearrec
from nearrec.errors import ModelMismatchError, ValidationError, VectorStoreLockedError
from nearrec.filters import FieldType, FilterExpr, matches, parse_filter, payload_value
from nearrec.vectors import CollectionNotFoundError, Hit, PointRecord, Sparse, VectorStore
from nearrec.vectors.base import UPSERT_CHUNK, Effort
from nearrec.vectors.edge import EdgeVectorStore
from nearrec.vectors.server import ServerVectorStore

DIM = 16
N = 300
COL = "items"
GENRES = ["drama", "comedy", "horror", "western"]
TAGS = ["a", "b", "c", "d", "e"]
SCHEMA = {
    "genre": FieldType.KEYWORD,
    "tags": FieldType.KEYWORD,
    "year": FieldType.INTEGER,
    "price": FieldType.FLOAT,
    "available": FieldType.BOOL,
}


class Data:
    """A deterministic catalog: random unit-free vectors, attributes with lists, bools and gaps."""

    def __init__(self, seed: int = 7, n: int = N) -> None:
        rng = np.random.default_rng(seed)
        self.ids = [int(i) for i in rng.permutation(np.arange(1, 10 * n))[:n]]
        self.vectors = rng.normal(size=(n, DIM)).astype(np.float32)
        self.unit = self.vectors / np.linalg.norm(self.vectors, axis=1, keepdims=True)
        self.payloads: list[dict[str, Any]] = []
        for k in range(n):
            attrs: dict[str, Any] = {
                "external_id": f"item-{self.ids[k]}",
                "genre": GENRES[k % 4],
                "tags": sorted({TAGS[j] for j in rng.integers(0, 5, size=int(rng.integers(1, 4)))}),
                "price": [9.5, 1.25, 20.0, 5.5, 7.0][k % 5],
                "available": bool(k % 3 == 0),
            }
            if k % 7:
                attrs["year"] = 1980 + int(rng.integers(0, 40))
            self.payloads.append(attrs)
        self.stored = [{key: payload_value(v) for key, v in p.items()} for p in self.payloads]

    def points(self) -> list[PointRecord]:
        return [
            PointRecord(i, {"text": v}, p)
            for i, v, p in zip(self.ids, self.vectors, self.payloads, strict=True)
        ]

    def reference(
        self, query: np.ndarray, limit: int, expr: FilterExpr | None = None, exclude: set[int] | None = None
    ) -> tuple[list[int], list[float]]:
        q = query / np.linalg.norm(query)
        scores = self.unit @ q
        keep = [
            k
            for k in range(len(self.ids))
            if (expr is None or matches(expr, self.stored[k])) and self.ids[k] not in (exclude or set())
        ]
        ranked = sorted(keep, key=lambda k: -scores[k])[:limit]
        return [self.ids[k] for k in ranked], [float(scores[k]) for k in ranked]


@pytest.fixture(scope="module")
def data() -> Data:
    return Data()


def _make(kind: str, tmp: Path) -> VectorStore:
    if kind == "embedded":
        return EdgeVectorStore(tmp / "vectors")
    return ServerVectorStore(QdrantClient(":memory:"))


@pytest.fixture(params=["embedded", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    s = _make(request.param, tmp_path)
    yield s
    s.close()


def _load(store: VectorStore, data: Data) -> VectorStore:
    store.ensure_collection(COL, {"text": DIM})
    for field, ftype in SCHEMA.items():
        store.ensure_index(COL, field, ftype)
    store.upsert(COL, data.points())
    return store


@pytest.fixture
def loaded(store: VectorStore, data: Data) -> VectorStore:
    """A fresh store holding the catalog, for tests that write."""
    return _load(store, data)


@pytest.fixture(scope="module", params=["embedded", "server"])
def shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, data: Data
) -> Iterator[VectorStore]:
    """One store per adapter holding the catalog, shared by the read-only tests."""
    s = _load(_make(request.param, tmp_path_factory.mktemp(request.param)), data)
    yield s
    s.close()


def ids(hits: list[Hit]) -> list[int]:
    return [h.id for h in hits]


# --- collections -------------------------------------------------------------------------------------------


def test_ensure_collection_is_idempotent_and_adds_vectors(store: VectorStore) -> None:
    store.ensure_collection(COL, {"text": DIM})
    store.upsert(COL, [PointRecord(1, {"text": np.ones(DIM)}, {"genre": "drama"})])
    store.ensure_collection(COL, {"text": DIM})
    assert store.collection_exists(COL)
    assert store.list_collections() == [COL]
    assert store.count(COL) == 1
    assert store.vector_sizes(COL) == {"text": DIM}

    with pytest.raises(ModelMismatchError, match="reindex"):
        store.ensure_collection(COL, {"text": DIM + 1})

    store.ensure_collection(COL, {"text": DIM, "cf": 4})  # a "cf" vector added later, dims known then
    assert store.vector_sizes(COL) == {"text": DIM, "cf": 4}
    store.update_vectors(COL, {1: {"cf": [0.0, 1.0, 0.0, 0.0]}})
    (hit,) = store.retrieve(COL, [1], with_vectors=True)
    assert hit.vector is not None and set(hit.vector) == {"text", "cf"}
    assert hit.payload == {"genre": "drama"}
    assert ids(store.query(COL, [0.0, 1.0, 0.0, 0.0], using="cf", limit=5)) == [1]


def test_delete_collection(store: VectorStore) -> None:
    store.ensure_collection("a", {"text": DIM})
    store.ensure_collection("b", {"text": DIM})
    assert store.list_collections() == ["a", "b"]
    store.delete_collection("a")
    store.delete_collection("a")  # no-op
    assert store.list_collections() == ["b"]
    assert not store.collection_exists("a")


def test_missing_collection_raises(store: VectorStore) -> None:
    with pytest.raises(CollectionNotFoundError):
        store.count("nope")
    with pytest.raises(CollectionNotFoundError):
        store.query("nope", [1.0] * DIM, using="text", limit=3)


def test_wrong_input_is_a_validation_error(store: VectorStore) -> None:
    store.ensure_collection(COL, {"text": DIM})
    with pytest.raises(ValidationError):
        store.upsert(COL, [PointRecord(1, {"text": [1.0, 2.0]}, {})])
    with pytest.raises(ValidationError):
        store.query(COL, [1.0, 2.0], using="text", limit=3)
    with pytest.raises(ValidationError):
        store.query(COL, [1.0] * DIM, using="nope", limit=3)
    with pytest.raises(ValidationError):
        store.query(COL, [1.0] * DIM, using="text", limit=0)


# --- points ------------------------------------------------------------------------------------------------


def test_upsert_retrieve_round_trip(shared: VectorStore, data: Data) -> None:
    asked = [data.ids[5], 999_999, data.ids[0], data.ids[5]]
    hits = shared.retrieve(COL, asked, with_vectors=True)
    assert ids(hits) == [data.ids[5], data.ids[0]]
    assert hits[0].score == 0.0
    assert hits[0].payload == data.stored[5]
    assert isinstance(hits[0].payload["available"], int) and not isinstance(
        hits[0].payload["available"], bool
    )
    assert hits[0].vector is not None
    np.testing.assert_allclose(hits[0].vector["text"], data.unit[5], atol=1e-5)  # cosine stores unit vectors
    assert shared.retrieve(COL, [data.ids[1]])[0].vector is None
    assert shared.count(COL) == N


def test_upsert_overwrites_and_set_payload_merges(loaded: VectorStore, data: Data) -> None:
    pid = data.ids[3]
    loaded.upsert(COL, [PointRecord(pid, {"text": -data.vectors[0]}, {"genre": "noir"})])
    (hit,) = loaded.retrieve(COL, [pid], with_vectors=True)
    assert hit.payload == {"genre": "noir"}
    assert hit.vector is not None
    np.testing.assert_allclose(hit.vector["text"], -data.unit[0], atol=1e-5)
    assert loaded.count(COL) == N

    loaded.set_payload(COL, [pid], {"year": 2001, "available": True})
    assert loaded.retrieve(COL, [pid])[0].payload == {"genre": "noir", "year": 2001, "available": 1}
    assert ids(loaded.query(COL, -data.vectors[0], "text", 1, filter=parse_filter({"available": True}))) == [
        pid
    ]


def test_delete_points(loaded: VectorStore, data: Data) -> None:
    gone = data.ids[:10]
    loaded.delete(COL, gone)
    assert loaded.count(COL) == N - 10
    assert loaded.retrieve(COL, gone) == []
    assert not set(gone) & set(ids(loaded.query(COL, data.vectors[0], "text", 50)))


def test_scroll_yields_everything_in_id_order(shared: VectorStore, data: Data) -> None:
    hits = list(shared.scroll(COL, batch=64))
    assert ids(hits) == sorted(data.ids)
    with_vec = list(shared.scroll(COL, batch=1000, with_vectors=True))
    assert all(h.vector is not None and len(h.vector["text"]) == DIM for h in with_vec)
    expr = parse_filter({"genre": "drama"})
    assert ids(list(shared.scroll(COL, batch=7, filter=expr))) == sorted(
        i for i, p in zip(data.ids, data.stored, strict=True) if matches(expr, p)
    )


# --- queries -----------------------------------------------------------------------------------------------


def test_sample_draws_distinct_points_with_their_vector(shared: VectorStore, data: Data) -> None:
    drawn = shared.sample(COL, "text", 50)
    assert len({h.id for h in drawn}) == 50 and {h.id for h in drawn} <= set(data.ids)
    by_id = dict(zip(data.ids, data.unit, strict=True))
    for h in drawn:
        assert h.vector is not None and np.allclose(h.vector["text"], by_id[h.id], atol=1e-5)
    assert len(shared.sample(COL, "text", 10 * N)) == N
    assert shared.indexed_vectors(COL) == 0  # 300 points: no graph, searched exactly


def test_an_explicit_exact_effort_gives_the_same_answers(shared: VectorStore, data: Data) -> None:
    q = np.random.default_rng(4).normal(size=DIM)
    want, _ = data.reference(q, 10)
    assert ids(shared.query(COL, q, "text", 10, search=Effort(exact=True))) == want
    assert ids(shared.query(COL, q, "text", 10, search=Effort(ef=64))) == want


def test_query_orders_by_cosine(shared: VectorStore, data: Data) -> None:
    q = np.random.default_rng(1).normal(size=DIM)
    hits = shared.query(COL, q, using="text", limit=10)
    want, scores = data.reference(q, 10)
    assert ids(hits) == want
    np.testing.assert_allclose([h.score for h in hits], scores, atol=1e-5)
    assert hits[0].payload == data.stored[data.ids.index(want[0])]
    assert ids(shared.query(COL, list(q), using="text", limit=10)) == want  # plain lists work too


FILTERS: list[dict[str, Any]] = [
    {"genre": "drama"},
    {"genre": {"eq": "comedy"}},
    {"year": 1995},
    {"available": True},
    {"available": False},
    {"available": {"ne": True}},
    {"price": 9.5},
    {"price": {"in": [1.25, 20.0]}},
    {"genre": {"in": ["drama", "comedy"]}},
    {"year": {"in": [1990, 1991, 1992, 1993]}},
    {"year": {"gte": 1990, "lt": 2000}},
    {"price": {"gt": 5.5}},
    {"price": {"lte": 5.5, "gte": 1.25}},
    {"not": {"genre": "drama"}},
    {"genre": {"ne": "drama"}},
    {"not": {"year": {"gte": 2000}}},  # includes points without a year
    {"and": [{"genre": "drama"}, {"year": {"gte": 1990}}]},
    {"or": [{"genre": "horror"}, {"available": True}]},
    {"genre": "western", "available": False},
    {"tags": "a"},
    {"tags": {"in": ["b", "c"]}},
    {"not": {"tags": "a"}},
    {"or": [{"and": [{"tags": "e"}, {"price": {"lt": 8}}]}, {"not": {"genre": {"in": ["drama", "horror"]}}}]},
    {"and": []},
]


@pytest.mark.parametrize("raw", FILTERS, ids=[str(f) for f in FILTERS])
def test_filter_operators(shared: VectorStore, data: Data, raw: dict[str, Any]) -> None:
    expr = parse_filter(raw, SCHEMA)
    q = np.random.default_rng(2).normal(size=DIM)
    want, _ = data.reference(q, 15, expr)
    assert want, "the case should select something"
    assert ids(shared.query(COL, q, using="text", limit=15, filter=expr)) == want
    assert shared.count(COL, expr) == sum(matches(expr, p) for p in data.stored)


def test_exclude_ids_are_never_returned(shared: VectorStore, data: Data) -> None:
    q = np.random.default_rng(3).normal(size=DIM)
    top, _ = data.reference(q, 40)
    exclude = set(top[:30]) | {123_456_789}
    hits = shared.query(COL, q, using="text", limit=20, exclude_ids=exclude)
    assert not exclude & set(ids(hits))
    assert ids(hits) == data.reference(q, 20, exclude=exclude)[0]
    expr = parse_filter({"genre": "drama"})
    assert (
        ids(shared.query(COL, q, "text", 20, filter=expr, exclude_ids=exclude))
        == data.reference(q, 20, expr, exclude)[0]
    )


def test_offset_pages_through_results(shared: VectorStore, data: Data) -> None:
    q = np.random.default_rng(4).normal(size=DIM)
    full = ids(shared.query(COL, q, using="text", limit=15))
    assert ids(shared.query(COL, q, using="text", limit=5, offset=5)) == full[5:10]
    expr = parse_filter({"available": False})
    assert ids(shared.query(COL, q, "text", 5, filter=expr, offset=10)) == data.reference(q, 15, expr)[0][10:]


def _rrf_reference(
    data: Data,
    queries: list[tuple[np.ndarray, float]],
    prefetch: int,
    expr: FilterExpr | None,
    exclude: set[int],
) -> dict[int, float]:
    scores: dict[int, float] = {}
    for q, weight in queries:
        for rank, pid in enumerate(data.reference(q, prefetch, expr, exclude)[0]):
            scores[pid] = scores.get(pid, 0.0) + 1 / ((rank + 1) / weight + 60 - 1)  # Qdrant's weighted RRF
    return scores


@pytest.mark.parametrize("weights", [(1.0, 1.0), (3.0, 1.0)])
def test_fused_query_rrf(shared: VectorStore, data: Data, weights: tuple[float, float]) -> None:
    rng = np.random.default_rng(5)
    qa, qb = rng.normal(size=DIM), rng.normal(size=DIM)
    expr = parse_filter({"genre": {"ne": "horror"}})
    exclude = set(data.reference(qa, 3)[0])
    fused = functools.partial(
        shared.query_fused,
        COL,
        [(qa, "text", weights[0]), (qb, "text", weights[1])],
        limit=10,
        filter=expr,
        exclude_ids=exclude,
        prefetch_limit=30,
    )
    hits = fused()
    ref = _rrf_reference(data, [(qa, weights[0]), (qb, weights[1])], 30, expr, exclude)
    best = sorted(ref.values(), reverse=True)[:10]
    assert len(hits) == 10
    np.testing.assert_allclose([h.score for h in hits], best, rtol=1e-5)  # same scores, ties in any order
    for h in hits:
        assert ref[h.id] == pytest.approx(h.score, rel=1e-5)
        assert h.id not in exclude and matches(expr, h.payload)
    bare = fused(with_payload=False)
    assert [h.score for h in bare] == [h.score for h in hits]  # the same list, ties in any order
    assert all(ref[h.id] == pytest.approx(h.score, rel=1e-5) and h.payload == {} for h in bare)


def test_fused_query_dbsf(shared: VectorStore, data: Data) -> None:
    rng = np.random.default_rng(6)
    qa, qb = rng.normal(size=DIM), rng.normal(size=DIM)
    expr = parse_filter({"available": True})
    hits = shared.query_fused(COL, [(qa, "text", 1.0), (qb, "text", 1.0)], 8, filter=expr, method="dbsf")
    assert len(hits) == 8 and all(h.payload["available"] == 1 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    with pytest.raises(ValidationError, match="weights"):
        shared.query_fused(COL, [(qa, "text", 2.0), (qb, "text", 1.0)], 8, method="dbsf")


def _mmr_reference(data: Data, q: np.ndarray, limit: int, diversity: float, candidates: int) -> list[int]:
    cand, _ = data.reference(q, candidates)
    pos = {pid: k for k, pid in enumerate(data.ids)}
    qn = q / np.linalg.norm(q)
    rel = {pid: float(data.unit[pos[pid]] @ qn) for pid in cand}
    selected, pending = [cand[0]], cand[1:]
    while len(selected) < limit and pending:

        def score(p: int) -> float:
            sim = max(float(data.unit[pos[p]] @ data.unit[pos[s]]) for s in selected)
            return (1 - diversity) * rel[p] - diversity * sim

        best = max(pending, key=score)
        selected.append(best)
        pending.remove(best)
    return selected


def test_mmr_diversifies(shared: VectorStore, data: Data) -> None:
    q = np.random.default_rng(8).normal(size=DIM)
    plain = ids(shared.query(COL, q, using="text", limit=10))
    assert ids(shared.query_mmr(COL, q, "text", 10, diversity=0.0, candidates_limit=60)) == plain
    diverse = shared.query_mmr(COL, q, "text", 10, diversity=0.7, candidates_limit=60)
    assert ids(diverse) != plain and ids(diverse)[0] == plain[0]
    assert ids(diverse) == _mmr_reference(data, q, 10, 0.7, 60)
    exclude = set(plain[:3])
    expr = parse_filter({"genre": {"in": ["drama", "comedy"]}})
    filtered = shared.query_mmr(COL, q, "text", 10, 0.7, 60, filter=expr, exclude_ids=exclude)
    assert len(filtered) == 10
    assert all(h.id not in exclude and matches(expr, h.payload) for h in filtered)
    with pytest.raises(ValidationError):
        shared.query_mmr(COL, q, "text", 10, diversity=1.5)


# --- aliases and metadata ------------------------------------------------------------------------------------


# --- sparse vectors ----------------------------------------------------------------------------------------

SPARSE_DIMS = 60


def _sparse_rows(n: int, seed: int) -> list[Sparse]:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        idx = np.sort(rng.choice(SPARSE_DIMS, size=int(rng.integers(1, 9)), replace=False))
        rows.append(Sparse(idx.tolist(), rng.uniform(-0.2, 1.0, size=idx.size).round(4).tolist()))
    return rows


def _sparse_reference(
    data: Data, rows: list[Sparse], query: Sparse, limit: int, expr: FilterExpr | None, exclude: set[int]
) -> list[tuple[int, float]]:
    """Points sharing an index with the query, by dot product (ties: smaller id)."""
    q = dict(zip(query.indices, query.values, strict=True))
    out = []
    for k, row in enumerate(rows):
        shared_idx = [i for i in row.indices if i in q]
        if (
            not shared_idx
            or data.ids[k] in exclude
            or (expr is not None and not matches(expr, data.stored[k]))
        ):
            continue
        score = sum(v * q[i] for i, v in zip(row.indices, row.values, strict=True) if i in q)
        out.append((data.ids[k], score))
    return sorted(out, key=lambda t: (-t[1], t[0]))[:limit]


@pytest.fixture
def sparse_loaded(loaded: VectorStore, data: Data) -> tuple[VectorStore, list[Sparse]]:
    """The catalog with a sparse vector "sp" added to an existing collection (text and payload kept)."""
    rows = _sparse_rows(len(data.ids), 11)
    loaded.ensure_collection(COL, {"text": DIM}, sparse=["sp"])
    loaded.update_vectors(COL, {pid: {"sp": row} for pid, row in zip(data.ids, rows, strict=True)})
    return loaded, rows


@pytest.mark.parametrize(
    "raw", [None, {"genre": "drama"}, {"genre": {"ne": "horror"}, "available": True}, {"year": {"gte": 2000}}]
)
def test_sparse_query_is_the_dot_product_under_filter_and_exclusion(
    sparse_loaded: tuple[VectorStore, list[Sparse]], data: Data, raw: dict[str, Any] | None
) -> None:
    store, rows = sparse_loaded
    assert store.sparse_vectors(COL) == ["sp"]
    assert store.vector_sizes(COL) == {"text": DIM}
    query = Sparse([3, 10, 17, 25, 41, 59], [0.5, 0.2, 1.0, 0.3, 0.7, 0.05])
    expr = parse_filter(raw, SCHEMA) if raw is not None else None
    unfiltered = _sparse_reference(data, rows, query, 10, expr, set())
    exclude = {pid for pid, _ in unfiltered[:4]} | {987_654_321}
    want = _sparse_reference(data, rows, query, 25, expr, exclude)
    hits = store.query(COL, query, using="sp", limit=25, filter=expr, exclude_ids=exclude)
    assert want and len(hits) == len(want)
    assert not exclude & set(ids(hits))
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in want], rtol=1e-4, atol=1e-6)
    assert ids(hits) == [pid for pid, _ in want]
    # the dense vector and the payload survived adding the sparse one
    got = store.retrieve(COL, [data.ids[0]], with_vectors=True)[0]
    assert got.vector is not None and set(got.vector) == {"text"}
    assert got.payload["genre"] == data.stored[0]["genre"]


def test_sparse_branch_in_a_fused_query(sparse_loaded: tuple[VectorStore, list[Sparse]], data: Data) -> None:
    store, rows = sparse_loaded
    query = Sparse([1, 2, 30, 44], [1.0, 0.5, 0.25, 0.8])
    dense = np.random.default_rng(12).normal(size=DIM)
    exclude = {pid for pid, _ in _sparse_reference(data, rows, query, 3, None, set())}
    hits = store.query_fused(
        COL, [(query, "sp", 1.0), (dense, "text", 0.5)], limit=15, exclude_ids=exclude, prefetch_limit=20
    )
    sparse_ranked = [pid for pid, _ in _sparse_reference(data, rows, query, 20, None, exclude)]
    dense_ranked = data.reference(dense, 20, exclude=exclude)[0]
    ref: dict[int, float] = {}
    for ranked, weight in ((sparse_ranked, 1.0), (dense_ranked, 0.5)):
        for rank, pid in enumerate(ranked):
            ref[pid] = ref.get(pid, 0.0) + 1 / ((rank + 1) / weight + 60 - 1)
    assert len(hits) == 15 and not exclude & set(ids(hits))
    np.testing.assert_allclose([h.score for h in hits], sorted(ref.values(), reverse=True)[:15], rtol=1e-5)


def test_sparse_vectors_are_created_and_deleted(store: VectorStore) -> None:
    store.ensure_collection(COL, {}, sparse=["a"])
    store.upsert(
        COL, [PointRecord(1, {"a": Sparse([1, 5], [0.5, 1.0])}), PointRecord(2, {"a": Sparse([2], [1.0])})]
    )
    assert ids(store.query(COL, Sparse([5], [2.0]), using="a", limit=5)) == [1]
    store.ensure_collection(COL, {"text": DIM}, sparse=["a", "b"])
    assert store.sparse_vectors(COL) == ["a", "b"]
    store.update_vectors(COL, {2: {"b": Sparse([7], [1.0])}})
    assert ids(store.query(COL, Sparse([7], [1.0]), using="b", limit=5)) == [2]
    store.delete_vector(COL, "a")
    store.delete_vector(COL, "a")  # absent: no-op
    assert store.sparse_vectors(COL) == ["b"]
    assert ids(store.query(COL, Sparse([7], [1.0]), using="b", limit=5)) == [2]
    with pytest.raises(ModelMismatchError):
        store.ensure_collection(COL, {}, sparse=["text"])
    with pytest.raises(ValidationError):
        store.ensure_collection("other", {"x": DIM}, sparse=["x"])


def test_clearing_a_vector_keeps_the_name_and_every_other_vector(store: VectorStore) -> None:
    """The item-item slots are cleared, not dropped, before a new model is written into them."""
    store.ensure_collection("items_v1", {"text": DIM}, sparse=["a", "b"])
    store.set_alias(COL, "items_v1")  # cleared through the alias, as the train job does
    store.upsert(
        COL,
        [
            PointRecord(
                pid, {"text": np.full(DIM, float(pid)), "a": Sparse([pid], [1.0]), "b": Sparse([9], [1.0])}
            )
            for pid in range(1, 2 * UPSERT_CHUNK + 3)  # more than one write chunk
        ],
    )
    store.clear_vector(COL, "a")
    store.clear_vector(COL, "nope")  # absent: no-op
    assert store.sparse_vectors(COL) == ["a", "b"]
    assert store.query(COL, Sparse([1, 2, 3], [1.0, 1.0, 1.0]), using="a", limit=5) == []
    assert len(store.query(COL, Sparse([9], [1.0]), using="b", limit=5)) == 5
    assert store.count(COL) == 2 * UPSERT_CHUNK + 2
    got = store.retrieve(COL, [7], with_vectors=True)[0]
    assert got.vector is not None and "text" in got.vector and "a" not in got.vector
    store.update_vectors(COL, {7: {"a": Sparse([4], [2.0])}})  # the slot takes new values
    assert ids(store.query(COL, Sparse([4], [1.0]), using="a", limit=5)) == [7]


def test_retrieve_returns_only_the_named_vectors(store: VectorStore) -> None:
    """What the model-vector cache reads: one dense vector of each point, not the large text one."""
    store.ensure_collection(COL, {"text": DIM, "cf1": 3})
    store.upsert(
        COL,
        [
            PointRecord(1, {"text": np.ones(DIM), "cf1": [1.0, 2.0, 2.0]}, {"genre": "drama"}),
            PointRecord(2, {"text": -np.ones(DIM)}, {"genre": "comedy"}),
        ],
    )
    one, two = store.retrieve(COL, [1, 2], with_vectors=["cf1"])
    assert one.payload == {"genre": "drama"} and two.payload == {"genre": "comedy"}
    assert one.vector is not None and list(one.vector) == ["cf1"]
    np.testing.assert_allclose(one.vector["cf1"], [1 / 3, 2 / 3, 2 / 3], atol=1e-6)
    assert not two.vector  # no such vector: nothing of the text one
    assert store.retrieve(COL, [1], with_vectors=[])[0].vector is None


def test_aliases_switch_collections(store: VectorStore) -> None:
    store.ensure_collection("items_v1", {"text": DIM})
    store.ensure_collection("items_v2", {"text": DIM})
    store.upsert("items_v1", [PointRecord(1, {"text": np.ones(DIM)}, {})])
    store.upsert(
        "items_v2", [PointRecord(2, {"text": np.ones(DIM)}, {}), PointRecord(3, {"text": -np.ones(DIM)}, {})]
    )
    assert store.resolve_alias("items") is None

    store.set_alias("items", "items_v1")
    assert store.resolve_alias("items") == "items_v1"
    assert store.collection_exists("items")
    assert ids(store.query("items", np.ones(DIM), "text", 5)) == [1]
    store.set_alias("items", "items_v2")  # the swap of a reindex
    assert store.count("items") == 2
    store.upsert("items", [PointRecord(4, {"text": np.ones(DIM)}, {})])
    assert store.count("items_v2") == 3
    assert store.list_collections() == ["items_v1", "items_v2"]

    with pytest.raises(ValidationError):
        store.set_alias("items_v1", "items_v2")  # a collection has that name
    with pytest.raises(CollectionNotFoundError):
        store.set_alias("other", "nope")
    with pytest.raises(ValidationError):
        store.ensure_collection("items", {"text": DIM})

    store.delete_alias("items")
    assert store.resolve_alias("items") is None
    store.set_alias("items", "items_v1")
    store.delete_collection("items_v1")
    assert store.resolve_alias("items") is None


def test_metadata(store: VectorStore) -> None:
    store.ensure_collection("items_v1", {"text": DIM})
    assert store.get_metadata("items_v1") == {}
    store.set_metadata("items_v1", {"model": "all-MiniLM-L6-v2", "dims": {"text": 384}})
    store.set_metadata("items_v1", {"built_at": "2024-01-01"})
    assert store.get_metadata("items_v1") == {
        "model": "all-MiniLM-L6-v2",
        "dims": {"text": 384},
        "built_at": "2024-01-01",
    }
    store.set_alias("items", "items_v1")
    store.set_metadata("items", {"built_at": None})
    assert store.get_metadata("items") == {"model": "all-MiniLM-L6-v2", "dims": {"text": 384}}


# --- congruence --------------------------------------------------------------------------------------------


def test_adapters_agree_on_random_queries(tmp_path: Path, data: Data) -> None:
    stores = [_make("embedded", tmp_path), _make("server", tmp_path)]
    try:
        for s in stores:
            s.ensure_collection(COL, {"text": DIM})
            s.ensure_index(COL, "genre", FieldType.KEYWORD)
            s.upsert(COL, data.points())
        rng = np.random.default_rng(9)
        for _ in range(25):
            q = rng.normal(size=DIM)
            raw = FILTERS[int(rng.integers(0, len(FILTERS)))]
            expr = parse_filter(raw, SCHEMA)
            exclude = {int(x) for x in rng.choice(data.ids, size=20, replace=False)}
            limit = int(rng.integers(1, 25))
            results = [ids(s.query(COL, q, "text", limit, filter=expr, exclude_ids=exclude)) for s in stores]
            assert results[0] == results[1], raw
            mmr = [ids(s.query_mmr(COL, q, "text", 8, 0.5, 40, filter=expr)) for s in stores]
            assert mmr[0] == mmr[1], raw
            counts = [s.count(COL, expr) for s in stores]
            assert counts[0] == counts[1]
    finally:
        for s in stores:
            s.close()


# --- embedded only -----------------------------------------------------------------------------------------

_OPEN_SNIPPET = """
import sys
from nearrec.errors import VectorStoreLockedError
from nearrec.vectors.edge import EdgeVectorStore
try:
    EdgeVectorStore(sys.argv[1]).close()
except VectorStoreLockedError as exc:
    print(exc)
    sys.exit(3)
"""


def _open_in_subprocess(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(nearrec.__file__).parents[1])}
    return subprocess.run(
        [sys.executable, "-c", _OPEN_SNIPPET, str(root)], capture_output=True, text=True, env=env, timeout=60
    )


def test_embedded_directory_belongs_to_one_process(tmp_path: Path) -> None:
    root = tmp_path / "vectors"
    store = EdgeVectorStore(root)
    try:
        done = _open_in_subprocess(root)
        assert done.returncode == 3, done.stderr
        assert f"is used by process {os.getpid()}" in done.stdout
        assert "NEARREC_QDRANT_URL" in done.stdout
        with pytest.raises(VectorStoreLockedError):
            EdgeVectorStore(root)  # a second opener in this process is refused too
    finally:
        store.close()
    assert _open_in_subprocess(root).returncode == 0  # released on close


def test_embedded_persists_across_reopen(tmp_path: Path, data: Data) -> None:
    root = tmp_path / "vectors"
    with EdgeVectorStore(root) as store:
        store.ensure_collection("items_v1", {"text": DIM})
        store.ensure_index("items_v1", "genre", FieldType.KEYWORD)
        store.upsert("items_v1", data.points())
        store.ensure_collection("items_v1", {"text": DIM, "cf": 3})
        store.update_vectors("items_v1", {data.ids[0]: {"cf": [1.0, 0.0, 0.0]}})
        store.set_metadata("items_v1", {"model": "m1"})
        store.set_alias("items", "items_v1")
    with EdgeVectorStore(root) as store:
        assert store.list_collections() == ["items_v1"]
        assert store.resolve_alias("items") == "items_v1"
        assert store.get_metadata("items") == {"model": "m1"}
        assert store.vector_sizes("items") == {"text": DIM, "cf": 3}
        assert store.count("items") == N
        q = data.vectors[10]
        assert ids(store.query("items", q, "text", 5)) == data.reference(q, 5)[0]
        assert ids(store.query("items", [1.0, 0.0, 0.0], "cf", 5)) == [data.ids[0]]
    store.close()  # twice is fine


def test_embedded_is_thread_safe(tmp_path: Path, data: Data) -> None:
    errors: list[BaseException] = []
    with EdgeVectorStore(tmp_path / "vectors") as store:
        store.ensure_collection(COL, {"text": DIM})
        store.upsert(COL, data.points()[:100])
        rest = data.points()[100:]

        def writer() -> None:
            try:
                for k in range(0, len(rest), 20):
                    store.upsert(COL, rest[k : k + 20])
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        def reader(seed: int) -> None:
            try:
                rng = np.random.default_rng(seed)
                for _ in range(50):
                    assert len(store.query(COL, rng.normal(size=DIM), "text", 5)) == 5
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer)] + [
            threading.Thread(target=reader, args=(s,)) for s in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert store.count(COL) == N


# --- factory -----------------------------------------------------------------------------------------------


def test_open_vector_store_picks_the_adapter(tmp_path: Path) -> None:
    from nearrec.config import Settings
    from nearrec.errors import StoreUnavailableError
    from nearrec.vectors import open_vector_store

    embedded = open_vector_store(Settings(data_dir=tmp_path, qdrant_url=None, _env_file=None))
    try:
        assert isinstance(embedded, EdgeVectorStore)
        assert embedded.root == tmp_path.resolve() / "vectors"
    finally:
        embedded.close()

    server = open_vector_store(
        Settings(data_dir=tmp_path, qdrant_url="http://127.0.0.1:9", qdrant_shard_number=2, _env_file=None)
    )
    try:
        assert isinstance(server, ServerVectorStore) and server.shard_number == 2
        with pytest.raises(StoreUnavailableError, match="127.0.0.1:9"):
            server.count(COL)
    finally:
        server.close()
