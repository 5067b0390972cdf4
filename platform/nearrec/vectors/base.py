"""The VectorStore protocol shared by the Qdrant server adapter and the embedded (qdrant-edge) adapter.

Conventions every adapter follows (checked by tests/vectors/test_contract.py):

- Distance is cosine; vectors are named (``"text"`` now, ``"cf"`` later). Qdrant normalises stored vectors,
  so vectors read back are unit length.
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
from typing import Any, Protocol, TypeAlias, runtime_checkable

import numpy as np
import numpy.typing as npt

from nearrec.errors import NotFoundError, ValidationError
from nearrec.filters import FieldType, FilterExpr

VectorLike: TypeAlias = npt.NDArray[np.floating[Any]] | Sequence[float]
UPSERT_CHUNK = 512
"""Points per engine write call."""


class CollectionNotFoundError(NotFoundError):
    """The collection (or alias) does not exist."""


@dataclass(frozen=True, slots=True)
class PointRecord:
    id: int
    vectors: Mapping[str, VectorLike]
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Hit:
    """One point of a result. ``score`` is 0 for retrieve / scroll; ``vector`` is set on request."""

    id: int
    score: float
    payload: dict[str, Any]
    vector: dict[str, list[float]] | None = None


@runtime_checkable
class VectorStore(Protocol):
    # --- collections -------------------------------------------------------------------------------------
    def ensure_collection(self, name: str, vectors: Mapping[str, int]) -> None:
        """Create the collection with these named vectors (name -> dimensions, cosine) if it is missing.

        Idempotent. On an existing collection, named vectors it lacks are added (existing points simply
        have no value for them); a named vector whose size differs raises ``ModelMismatchError``."""
        ...

    def vector_sizes(self, name: str) -> dict[str, int]:
        """Named vectors of the collection and their dimensions."""
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

    def update_vectors(self, name: str, vectors: Mapping[int, Mapping[str, VectorLike]]) -> None:
        """Set some named vectors of existing points, keeping the others and the payload."""
        ...

    def set_payload(self, name: str, ids: Sequence[int], payload: Mapping[str, Any]) -> None:
        """Merge ``payload`` into the payload of existing points."""
        ...

    def delete(self, name: str, ids: Sequence[int]) -> None: ...

    def retrieve(self, name: str, ids: Sequence[int], with_vectors: bool = False) -> list[Hit]:
        """Points by id, in the order asked, missing ids skipped."""
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
        vector: VectorLike,
        using: str,
        limit: int,
        filter: FilterExpr | None = None,
        exclude_ids: Collection[int] = (),
        offset: int = 0,
        with_vectors: bool = False,
    ) -> list[Hit]:
        """Nearest points by cosine similarity, best first; ``exclude_ids`` are never returned."""
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

    def close(self) -> None: ...


# --- helpers shared by the adapters ---------------------------------------------------------------------------


def as_list(vector: VectorLike) -> list[float]:
    """A vector as a list of Python floats (what both engines take)."""
    if isinstance(vector, np.ndarray):
        out: list[float] = vector.astype(np.float32, copy=False).ravel().tolist()
        return out
    return list(vector)


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
