"""Vector stores: the VectorStore protocol, a Qdrant server adapter and the embedded qdrant-edge adapter."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nearrec.vectors.base import (
    AnyVector,
    CollectionNotFoundError,
    FusedQuery,
    FusionMethod,
    Hit,
    PointRecord,
    Sparse,
    VectorLike,
    VectorStore,
)

if TYPE_CHECKING:
    from nearrec.config import Settings

__all__ = [
    "AnyVector",
    "CollectionNotFoundError",
    "FusedQuery",
    "FusionMethod",
    "Hit",
    "PointRecord",
    "Sparse",
    "VectorLike",
    "VectorStore",
    "open_vector_store",
    "read_consistency",
]


def open_vector_store(settings: Settings) -> VectorStore:
    """The Qdrant server store when ``settings.qdrant_url`` is set, else the embedded store under
    ``settings.data_dir / "vectors"`` (which this process then owns until ``close()``)."""
    if settings.qdrant_url:
        from nearrec.vectors.server import ServerVectorStore

        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return ServerVectorStore.connect(
            settings.qdrant_url,
            api_key or None,
            shard_number=settings.qdrant_shard_number,
            replication_factor=settings.qdrant_replication_factor,
            write_consistency_factor=settings.qdrant_write_consistency_factor,
            read_consistency=read_consistency(settings.qdrant_read_consistency),
        )
    from nearrec.vectors.edge import EdgeVectorStore

    return EdgeVectorStore(settings.data_dir / "vectors")


def read_consistency(value: str | None) -> str | int | None:
    """The ``NEARREC_QDRANT_READ_CONSISTENCY`` setting as qdrant-client wants it (a number is an int)."""
    return int(value) if value is not None and value.isdigit() else value
