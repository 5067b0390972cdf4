"""Helpers of the qdrant-client adapter (:mod:`nearrec.vectors.server`): conversions between nearrec values
and qdrant-client models, the fused query and error details."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

from nearrec.filters import FieldType
from nearrec.vectors.base import (
    RRF_K,
    AnyVector,
    FusedQuery,
    FusionMethod,
    Hit,
    Sparse,
    as_list,
    check_fusion,
    check_limit,
)

INDEX_TYPES = {
    FieldType.KEYWORD: models.PayloadSchemaType.KEYWORD,
    FieldType.INTEGER: models.PayloadSchemaType.INTEGER,
    FieldType.FLOAT: models.PayloadSchemaType.FLOAT,
    FieldType.BOOL: models.PayloadSchemaType.INTEGER,  # booleans are stored as 0 / 1
}


def fused_query(
    queries: Sequence[FusedQuery],
    limit: int,
    qfilter: models.Filter | None,
    prefetch_limit: int,
    method: FusionMethod,
) -> tuple[list[models.Prefetch], models.Query]:
    """A prefetch per query (filter and exclusions in each) and the (weighted) RRF or DBSF fusion."""
    check_limit(limit)
    weights = check_fusion(queries, method)
    prefetch = [
        models.Prefetch(query=server_vector(v), using=using, limit=max(prefetch_limit, limit), filter=qfilter)
        for v, using, _ in queries
    ]
    fusion: models.Query = (
        models.RrfQuery(rrf=models.Rrf(k=RRF_K, weights=weights))
        if method == "rrf"
        else models.FusionQuery(fusion=models.Fusion.DBSF)
    )
    return prefetch, fusion


def server_vector(vector: AnyVector) -> Any:
    if isinstance(vector, Sparse):
        return models.SparseVector(
            indices=[int(i) for i in vector.indices], values=[float(v) for v in vector.values]
        )
    return as_list(vector)


def server_hit(point: models.ScoredPoint | models.Record, score: float, with_vectors: bool) -> Hit:
    vector: Any = point.vector if with_vectors else None
    if not isinstance(vector, dict):
        return Hit(int(point.id), score, dict(point.payload or {}), None)
    dense = {k: v for k, v in vector.items() if not isinstance(v, models.SparseVector)}
    sparse = {
        k: Sparse(list(v.indices), list(v.values))
        for k, v in vector.items()
        if isinstance(v, models.SparseVector)
    }
    return Hit(int(point.id), score, dict(point.payload or {}), dense, sparse)


def error_detail(exc: UnexpectedResponse) -> str:
    try:
        status = exc.structured().get("status", {})
        return str(status.get("error", status)) if isinstance(status, dict) else str(status)
    except Exception:
        return exc.reason_phrase or "unexpected response"


__all__ = ["INDEX_TYPES", "error_detail", "fused_query", "server_hit", "server_vector"]
