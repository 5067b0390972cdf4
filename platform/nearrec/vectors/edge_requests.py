"""Requests of the embedded vector store (:mod:`nearrec.vectors.edge`): conversions between nearrec values and
qdrant-edge ones, the write operations, the fused and MMR queries and their search parameters."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from qdrant_edge import (
    Fusion,
    Mmr,
    Point,
    PointVectors,
    Prefetch,
    Query,
    QueryRequest,
    SearchParams,
    SparseVector,
    UpdateOperation,
)

from nearrec.errors import ValidationError
from nearrec.filters import FilterExpr, payload_value
from nearrec.vectors.base import (
    RRF_K,
    UPSERT_CHUNK,
    AnyVector,
    Effort,
    FusedQuery,
    FusionMethod,
    Hit,
    PointRecord,
    Sparse,
    as_list,
    check_fusion,
    check_limit,
    check_mmr,
)
from nearrec.vectors.filters_edge import to_edge_filter


def upsert_ops(points: Sequence[PointRecord]) -> Iterator[tuple[UpdateOperation, list[int]]]:
    """The upserts of ``points``, ``UPSERT_CHUNK`` at a time, with the ids each one writes."""
    for start in range(0, len(points), UPSERT_CHUNK):
        chunk = [
            Point(
                p.id,
                {k: edge_vector(v) for k, v in p.vectors.items()},
                {k: payload_value(v) for k, v in p.payload.items()},
            )
            for p in points[start : start + UPSERT_CHUNK]
        ]
        yield UpdateOperation.upsert_points(chunk), [int(p.id) for p in chunk]


def vector_ops(vectors: Mapping[int, Mapping[str, AnyVector]]) -> Iterator[tuple[UpdateOperation, list[int]]]:
    """The updates setting these named vectors of existing points, with the ids each one writes."""
    items = list(vectors.items())
    for start in range(0, len(items), UPSERT_CHUNK):
        part = items[start : start + UPSERT_CHUNK]
        chunk = [PointVectors(pid, {k: edge_vector(v) for k, v in named.items()}) for pid, named in part]
        yield UpdateOperation.update_vectors(chunk), [pid for pid, _ in part]


def search_params(effort: Effort) -> SearchParams:
    return SearchParams(exact=True) if effort.exact else SearchParams(hnsw_ef=effort.ef)


def fused_request(
    queries: Sequence[FusedQuery],
    limit: int,
    filter: FilterExpr | None,
    exclude_ids: Collection[int],
    prefetch_limit: int,
    method: FusionMethod,
    efforts: Mapping[str, SearchParams],
    with_payload: bool = True,
) -> QueryRequest:
    """One request: a prefetch per query (filter and exclusions in each), fused by (weighted) RRF or DBSF."""
    check_limit(limit)
    weights = check_fusion(queries, method)
    edge_filter = to_edge_filter(filter, exclude_ids)
    prefetches = [
        Prefetch(
            limit=max(prefetch_limit, limit),
            query=Query.Nearest(edge_vector(vector), using=using),
            filter=edge_filter,
            params=efforts.get(using),
        )
        for vector, using, _ in queries
    ]
    fusion: Any = Fusion.Rrf(k=RRF_K, weights=weights) if method == "rrf" else Fusion.Dbsf()
    return QueryRequest(
        limit=limit, prefetches=prefetches, query=fusion, filter=edge_filter, with_payload=with_payload
    )


def mmr_request(
    vector: AnyVector,
    using: str,
    limit: int,
    diversity: float,
    candidates_limit: int,
    filter: FilterExpr | None,
    exclude_ids: Collection[int],
    params: SearchParams | None,
) -> QueryRequest:
    """A maximal-marginal-relevance query: ``diversity`` 0 is plain relevance, 1 the most varied."""
    candidates = check_mmr(diversity, limit, candidates_limit)
    if isinstance(vector, Sparse):
        raise ValidationError("diversity (MMR) needs a dense vector", path="diversity")
    mmr = Mmr(as_list(vector), lambda_=1.0 - diversity, candidates_limit=candidates, using=using)
    edge_filter = to_edge_filter(filter, exclude_ids)
    return QueryRequest(limit=limit, query=mmr, filter=edge_filter, with_payload=True, params=params)


def edge_hit(point: Any, score: float, with_vectors: bool) -> Hit:
    """A Hit from a shard record / scored point (named vectors are always a dict here)."""
    vector = point.vector if with_vectors and isinstance(point.vector, dict) else None
    if vector is None:
        return Hit(int(point.id), score, point.payload or {}, None)
    dense = {k: v for k, v in vector.items() if not isinstance(v, SparseVector)}
    sparse = {k: Sparse(v.indices, v.values) for k, v in vector.items() if isinstance(v, SparseVector)}
    return Hit(int(point.id), score, point.payload or {}, dense, sparse)


def edge_vector(vector: AnyVector) -> Any:
    if isinstance(vector, Sparse):
        return SparseVector([int(i) for i in vector.indices], [float(v) for v in vector.values])
    return as_list(vector)


__all__ = [
    "edge_hit",
    "edge_vector",
    "fused_request",
    "mmr_request",
    "search_params",
    "upsert_ops",
    "vector_ops",
]
