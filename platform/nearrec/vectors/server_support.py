"""Helpers of the qdrant-client adapter (:mod:`nearrec.vectors.server`): conversions between nearrec values
and qdrant-client models, the fused query and error details."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

import httpx
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from nearrec.errors import ModelMismatchError, NearrecError, StoreUnavailableError, ValidationError
from nearrec.filters import FieldType
from nearrec.vectors.base import (
    RRF_K,
    SPARSE_FULL_SCAN_THRESHOLD,
    AnyVector,
    CollectionNotFoundError,
    Effort,
    FusedQuery,
    FusionMethod,
    Hit,
    Sparse,
    as_list,
    check_fusion,
    check_limit,
    stored_efforts,
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
    params: Mapping[str, models.SearchParams | None],
) -> tuple[list[models.Prefetch], models.Query]:
    """A prefetch per query (filter and exclusions in each) and the (weighted) RRF or DBSF fusion."""
    check_limit(limit)
    weights = check_fusion(queries, method)
    prefetch = [
        models.Prefetch(
            query=server_vector(v),
            using=using,
            limit=max(prefetch_limit, limit),
            filter=qfilter,
            params=None if isinstance(v, Sparse) else params.get(using),
        )
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


def add_vectors(
    client: QdrantClient,
    name: str,
    have: Mapping[str, int],
    have_sparse: Collection[str],
    vectors: Mapping[str, int],
    sparse: Collection[str],
) -> None:
    """Add the named vectors an existing collection lacks (a size mismatch is an error)."""
    for vname, size in vectors.items():
        if vname not in have:
            dense = models.DenseVectorConfig(size=size, distance=models.Distance.COSINE)
            client.create_vector_name(name, vname, models.DenseVectorNameConfig(dense=dense))
        elif have[vname] != size:
            raise ModelMismatchError(
                f"collection {name!r}: vector {vname!r} has {have[vname]} dimensions, {size} were "
                "asked; run `nearrec reindex`"
            )
    for vname in sparse:
        if vname in have:
            raise ModelMismatchError(f"collection {name!r}: vector {vname!r} is dense, not sparse")
        if vname not in have_sparse:
            config_sparse = models.SparseVectorNameConfig(sparse=models.SparseVectorConfig())
            client.create_vector_name(name, vname, config_sparse)


def alias_ops(alias: str, collection: str, current: str | None) -> list[models.AliasOperations]:
    """Point ``alias`` at ``collection`` in one atomic change (deleting it first if it points elsewhere)."""
    ops: list[models.AliasOperations] = []
    if current is not None:
        ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
    create = models.CreateAlias(collection_name=collection, alias_name=alias)
    return [*ops, models.CreateAliasOperation(create_alias=create)]


def sparse_params() -> models.SparseVectorParams:
    index = models.SparseIndexParams(full_scan_threshold=SPARSE_FULL_SCAN_THRESHOLD)
    return models.SparseVectorParams(index=index)


def qdrant_params(effort: Effort) -> models.SearchParams:
    return models.SearchParams(exact=True) if effort.exact else models.SearchParams(hnsw_ef=effort.ef)


class EffortCache:
    """The calibrated search effort per collection (or alias) and named vector, read from the collection's
    metadata at most every ``ttl`` seconds: a query pays no metadata round trip, and a calibration made by
    another process (the worker) is used within ``ttl``."""

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._read: dict[str, tuple[float, dict[str, Effort]]] = {}

    def get(self, name: str, using: str, metadata: Callable[[str], Mapping[str, Any]]) -> Effort | None:
        now = time.monotonic()
        cached = self._read.get(name)
        if cached is None or now - cached[0] > self.ttl:
            cached = (now, stored_efforts(metadata(name)))
            self._read = {**self._read, name: cached}  # replaced, never mutated: no lock for readers
        return cached[1].get(using)

    def clear(self) -> None:
        self._read = {}


@contextlib.contextmanager
def server_errors(name: str, where: str, local: bool) -> Iterator[None]:
    """Translate qdrant-client errors into nearrec errors (``where``: the server, for messages)."""
    try:
        yield
    except NearrecError:
        raise
    except UnexpectedResponse as exc:
        detail = error_detail(exc)
        if exc.status_code == 404:
            raise CollectionNotFoundError(f"collection {name!r} does not exist ({detail})") from exc
        if exc.status_code in (400, 422):
            raise ValidationError(f"collection {name!r}: {detail}") from exc
        raise StoreUnavailableError(f"{where}: HTTP {exc.status_code}: {detail}") from exc
    except (ResponseHandlingException, httpx.TransportError, OSError) as exc:
        raise StoreUnavailableError(f"cannot reach the Qdrant server at {where}: {exc}") from exc
    except ValueError as exc:  # local mode
        if local and str(exc).startswith("Collection ") and str(exc).endswith("not found"):
            raise CollectionNotFoundError(f"collection {name!r} does not exist") from exc
        raise ValidationError(f"collection {name!r}: {exc}") from exc


__all__ = [
    "INDEX_TYPES",
    "EffortCache",
    "add_vectors",
    "alias_ops",
    "error_detail",
    "fused_query",
    "qdrant_params",
    "server_errors",
    "server_hit",
    "server_vector",
    "sparse_params",
]
