"""The VectorStore protocol shared by the Qdrant server adapter and the embedded (qdrant-edge) adapter.

Conventions every adapter follows (checked by tests/vectors/test_contract.py):

- Distance is cosine; vectors are named (``"text"``, ``"cf..."``). Qdrant normalises stored vectors,
  so vectors read back are unit length.
- Sparse named vectors (:class:`Sparse`, declared with ``ensure_collection(..., sparse=...)``) score by the
  plain dot product over shared indices; a point without the sparse vector, or sharing no index with the
  query, is not a sparse hit. Wherever a vector is written or queried, a :class:`Sparse` may stand for it.
- Point ids are the internal Postgres ids (non-negative ints). Payload values are stored as
  :func:`nearrec.filters.payload_value` makes them (booleans as 0 / 1); adapters apply it on every write.
- Every write returns once it is applied (``wait=True``).
- A collection name may be an alias (see ``set_alias``) everywhere a collection is read or written;
  ``ensure_collection`` and ``delete_collection`` take physical names.
- Engine errors surface as :mod:`nearrec.errors`: wrong input (dimension, unknown vector name) as
  ``ValidationError``, a missing collection as :class:`CollectionNotFoundError`, an unreachable or failing
  engine as ``StoreUnavailableError``, a vector size that differs from the collection's as
  ``ModelMismatchError``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

import numpy as np
import numpy.typing as npt

from nearrec.errors import NotFoundError, ValidationError
from nearrec.filters import FieldType, FilterExpr
from nearrec.vectors.payload import META_SEARCH

VectorLike: TypeAlias = npt.NDArray[np.floating[Any]] | Sequence[float]


@dataclass(frozen=True, slots=True)
class Sparse:
    """A sparse vector: parallel non-negative ``indices`` (unique, < 2**32) and ``values``."""

    indices: Sequence[int]
    values: Sequence[float]

    def __post_init__(self) -> None:
        if len(self.indices) != len(self.values):
            raise ValidationError("a sparse vector needs as many values as indices", path="vector")


AnyVector: TypeAlias = VectorLike | Sparse
FusionMethod: TypeAlias = Literal["rrf", "dbsf"]
RRF_K = 60
SPARSE_FULL_SCAN_THRESHOLD = 1
"""Sparse vectors are always searched through their inverted index, a filter or not. Qdrant's default
(a few thousand) scans and scores every point matching a filter one by one below that count, so on a small
catalog every filtered item-item query (and the service's are always filtered: active items, no seen ones)
cost milliseconds where the index answers in a fraction; both are exact (same dot products)."""
"""The k of reciprocal rank fusion: score = sum over queries of 1 / ((rank + 1) / weight + k - 1), rank from 0
(Qdrant's weighted RRF; with weight 1 it is the usual 1 / (k + rank))."""
UPSERT_CHUNK = 512
"""Points per engine write call."""


class CollectionNotFoundError(NotFoundError):
    """The collection (or alias) does not exist."""


@dataclass(frozen=True, slots=True)
class PointRecord:
    id: int
    vectors: Mapping[str, AnyVector]
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Hit:
    """One point of a result. ``score`` is 0 for retrieve / scroll; ``vector`` (dense named vectors) and
    ``sparse`` (sparse named vectors) are set on request."""

    id: int
    score: float
    payload: dict[str, Any]
    vector: dict[str, list[float]] | None = None
    sparse: dict[str, Sparse] | None = None

    def all_vectors(self) -> dict[str, AnyVector]:
        """Every named vector of the point (dense and sparse), e.g. to rewrite it whole."""
        return {**(self.vector or {}), **(self.sparse or {})}


@dataclass(frozen=True, slots=True)
class Effort:
    """How a dense query searches the HNSW graph: with ``ef`` candidates (None: the engine's default, its
    ``ef_construct``), or ``exact``: every point (matching the filter) scored, no graph."""

    ef: int | None = None
    exact: bool = False


@dataclass(frozen=True, slots=True)
class Graph:
    """HNSW build parameters: ``m`` links per node, ``ef_construct`` candidates per insertion (defaults:
    Qdrant's). A denser graph (:meth:`denser`) finds more true neighbours per search candidate, for a build
    about twice as long and more memory for links."""

    m: int = 16
    ef_construct: int = 100

    def denser(self) -> Graph:
        return Graph(self.m * 2, self.ef_construct * 2)


def stored_efforts(metadata: Mapping[str, Any]) -> dict[str, Effort]:
    """The calibrated :class:`Effort` per named vector recorded in a collection's metadata."""
    record = metadata.get(META_SEARCH)
    vectors = record.get("vectors") if isinstance(record, dict) else None
    out: dict[str, Effort] = {}
    for name, chosen in (vectors or {}).items():
        if isinstance(chosen, dict) and (chosen.get("exact") or isinstance(chosen.get("ef"), int)):
            out[name] = Effort(exact=True) if chosen.get("exact") else Effort(ef=int(chosen["ef"]))
    return out


FusedQuery: TypeAlias = tuple[AnyVector, str, float]
"""(vector, vector name, weight) of one branch of a fused query."""


@runtime_checkable
class VectorStore(Protocol):
    # --- collections -------------------------------------------------------------------------------------
    def ensure_collection(self, name: str, vectors: Mapping[str, int], sparse: Collection[str] = ()) -> None:
        """Create the collection with these named vectors (name -> dimensions, cosine) and ``sparse`` named
        vectors if it is missing.

        Idempotent. On an existing collection, named vectors it lacks are added (existing points simply
        have no value for them); a named vector whose size differs raises ``ModelMismatchError``."""
        ...

    def vector_sizes(self, name: str) -> dict[str, int]:
        """Dense named vectors of the collection and their dimensions."""
        ...

    def sparse_vectors(self, name: str) -> list[str]:
        """Sparse named vectors of the collection, sorted."""
        ...

    def delete_vector(self, name: str, vector: str) -> None:
        """Drop a named vector (dense or sparse) from the collection and its points; no-op if absent."""
        ...

    def clear_vector(self, name: str, vector: str) -> None:
        """Remove ``vector``'s values from every point, keeping the named vector and its index config."""
        ...

    def ensure_index(self, name: str, field: str, type: FieldType) -> None:
        """Create a payload index on ``field`` if missing (BOOL fields are indexed as integers)."""
        ...

    def collection_exists(self, name: str) -> bool: ...

    def delete_collection(self, name: str) -> None:
        """Drop a physical collection and the aliases pointing to it; no-op if it does not exist."""
        ...

    def list_collections(self) -> list[str]:
        """Physical collection names, sorted."""
        ...

    # --- aliases (zero-downtime reindex) -----------------------------------------------------------------
    def set_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` atomically, replacing any previous target."""
        ...

    def resolve_alias(self, alias: str) -> str | None:
        """The collection ``alias`` points to, or None."""
        ...

    def delete_alias(self, alias: str) -> None: ...

    # --- metadata (embedding model id, dims) ---------------------------------------------------------------
    def get_metadata(self, name: str) -> dict[str, Any]: ...

    def set_metadata(self, name: str, metadata: Mapping[str, Any]) -> None:
        """Merge top-level keys into the collection metadata; a ``None`` value removes the key."""
        ...

    # --- points ------------------------------------------------------------------------------------------
    def upsert(self, name: str, points: Sequence[PointRecord]) -> None:
        """Insert or replace whole points (vectors not given are dropped from a replaced point)."""
        ...

    def update_vectors(self, name: str, vectors: Mapping[int, Mapping[str, AnyVector]]) -> None:
        """Set some named vectors of existing points, keeping the others and the payload."""
        ...

    def set_payload(self, name: str, ids: Sequence[int], payload: Mapping[str, Any]) -> None:
        """Merge ``payload`` into the payload of existing points."""
        ...

    def delete(self, name: str, ids: Sequence[int]) -> None: ...

    def retrieve(self, name: str, ids: Sequence[int], with_vectors: bool | list[str] = False) -> list[Hit]:
        """Points by id, in the order asked, missing ids skipped; ``with_vectors`` a list of names: those
        vectors only (reading a point's every vector converts them all, the large text one too)."""
        ...

    def scroll(
        self, name: str, batch: int = 1000, with_vectors: bool = False, filter: FilterExpr | None = None
    ) -> Iterator[Hit]:
        """Every point (matching ``filter``), in id order, fetched ``batch`` at a time."""
        ...

    def count(self, name: str, filter: FilterExpr | None = None) -> int: ...

    # --- queries -----------------------------------------------------------------------------------------
    def query(
        self,
        name: str,
        vector: AnyVector,
        using: str,
        limit: int,
        filter: FilterExpr | None = None,
        exclude_ids: Collection[int] = (),
        offset: int = 0,
        with_vectors: bool = False,
        search: Effort | None = None,
    ) -> list[Hit]:
        """Nearest points by cosine similarity (dot product for a :class:`Sparse` query on a sparse vector),
        best first; ``exclude_ids`` are never returned. ``search``: how to walk the HNSW graph (None: the
        effort calibrated for ``using``, see :data:`META_SEARCH`, else the engine's default)."""
        ...

    def query_fused(
        self,
        name: str,
        queries: Sequence[FusedQuery],
        limit: int,
        filter: FilterExpr | None = None,
        exclude_ids: Collection[int] = (),
        prefetch_limit: int = 100,
        method: FusionMethod = "rrf",
        with_payload: bool = True,
    ) -> list[Hit]:
        """Fuse the nearest ``prefetch_limit`` points of each query (filter and exclusions apply to each).
        RRF honours the weights (see :data:`RRF_K`); DBSF only accepts equal weights. ``with_payload``
        False: ids and scores only (empty payloads), for callers that drop most hits and read the rest."""
        ...

    def query_mmr(
        self,
        name: str,
        vector: VectorLike,
        using: str,
        limit: int,
        diversity: float = 0.5,
        candidates_limit: int = 100,
        filter: FilterExpr | None = None,
        exclude_ids: Collection[int] = (),
    ) -> list[Hit]:
        """Maximal marginal relevance over the nearest ``candidates_limit`` points. ``diversity`` in [0, 1]:
        0 is plain relevance order. Scores are the cosine similarities to ``vector``."""
        ...

    # --- search effort (see nearrec.vectors.calibrate) --------------------------------------------------
    def sample(self, name: str, using: str, n: int) -> list[Hit]:
        """Up to ``n`` points drawn at random among those holding the dense vector ``using``, with vectors."""
        ...

    def indexed_vectors(self, name: str) -> int | None:
        """Vectors of the collection inside HNSW graphs; None while the engine is (re)building them."""
        ...

    def graph(self, name: str) -> Graph:
        """The HNSW parameters of the collection's graph (its next builds use them too)."""
        ...

    def rebuild_graph(self, name: str, graph: Graph) -> None:
        """Rebuild the collection's HNSW graph with ``graph``'s parameters: the embedded store in a child
        process, returning once queries use it; a Qdrant server in the background (the collection is not
        green meanwhile)."""
        ...

    def close(self) -> None: ...


# --- helpers shared by the adapters ---------------------------------------------------------------------------


def as_list(vector: VectorLike) -> list[float]:
    """A vector as a list of Python floats (what both engines take)."""
    if isinstance(vector, np.ndarray):
        out: list[float] = vector.astype(np.float32, copy=False).ravel().tolist()
        return out
    return list(vector)


def check_names(vectors: Mapping[str, int], sparse: Collection[str]) -> None:
    """A collection needs a vector; a name is either dense or sparse."""
    if not vectors and not sparse:
        raise ValidationError("a collection needs at least one named vector", path="vectors")
    both = sorted(set(vectors) & set(sparse))
    if both:
        raise ValidationError(f"vector {both[0]!r} cannot be both dense and sparse", path="vectors")


def check_fusion(queries: Sequence[FusedQuery], method: FusionMethod) -> list[float] | None:
    """Validate fused queries; return the RRF weights to pass to the engine (None when all equal 1)."""
    if not queries:
        raise ValidationError("a fused query needs at least one query", path="queries")
    if method not in ("rrf", "dbsf"):
        raise ValidationError(f"unknown fusion method {method!r} (rrf or dbsf)", path="method")
    weights = [float(w) for _, _, w in queries]
    if any(w <= 0 for w in weights):
        raise ValidationError("fusion weights must be positive", path="queries")
    if all(w == 1.0 for w in weights):
        return None
    if method == "dbsf":
        raise ValidationError("dbsf fusion does not support weights; use rrf", path="method")
    return weights


def check_mmr(diversity: float, limit: int, candidates_limit: int) -> int:
    """Validate MMR parameters; return the candidates limit to use (at least ``limit``)."""
    check_limit(limit)
    if not 0.0 <= diversity <= 1.0:
        raise ValidationError(f"diversity must be within [0, 1], got {diversity}", path="diversity")
    return max(candidates_limit, limit)


def check_limit(limit: int, offset: int = 0) -> None:
    if limit < 1:
        raise ValidationError(f"limit must be positive, got {limit}", path="limit")
    if offset < 0:
        raise ValidationError(f"offset must be non-negative, got {offset}", path="offset")


def order_like(ids: Sequence[int], hits: Sequence[Hit]) -> list[Hit]:
    """``hits`` in the order of ``ids`` (first occurrence), ids without a hit skipped."""
    by_id = {h.id: h for h in hits}
    out: list[Hit] = []
    for i in dict.fromkeys(ids):
        hit = by_id.get(i)
        if hit is not None:
            out.append(hit)
    return out
