"""VectorStore on qdrant-client: a Qdrant server (``url``), or its local mode in tests (``:memory:`` or ``path=``).

Collection metadata (model id, dims, search effort) is Qdrant's collection ``metadata`` (merged on update,
``None`` removes a key); aliases are Qdrant aliases; a missing named vector is added with ``create_vector_name``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from nearrec.errors import ValidationError
from nearrec.filters import FieldType, FilterExpr, payload_value
from nearrec.vectors.base import (
    UPSERT_CHUNK,
    AnyVector,
    CollectionNotFoundError,
    Effort,
    FusedQuery,
    FusionMethod,
    Graph,
    Hit,
    PointRecord,
    Sparse,
    as_list,
    check_limit,
    check_mmr,
    check_names,
    order_like,
)
from nearrec.vectors.filters_qdrant import to_qdrant_filter
from nearrec.vectors.server_support import (
    INDEX_TYPES,
    EffortCache,
    add_vectors,
    alias_ops,
    fused_query,
    qdrant_params,
    server_errors,
    server_hit,
    server_vector,
    sparse_params,
)


class ServerVectorStore:
    """VectorStore on a ``QdrantClient``. ``shard_number`` / ``replication_factor`` /
    ``write_consistency_factor`` apply to collections this store creates (a Qdrant cluster; ignored by local
    mode). ``read_consistency`` (None: Qdrant's default, one replica; an int, ``majority``, ``quorum`` or
    ``all``) is how many replicas of each shard a query or retrieve waits for."""

    def __init__(
        self,
        client: QdrantClient,
        *,
        shard_number: int = 1,
        replication_factor: int = 1,
        write_consistency_factor: int = 1,
        read_consistency: str | int | None = None,
        owns_client: bool = True,
        where: str = "Qdrant",
    ) -> None:
        self.client, self._owns_client, self._where = client, owns_client, where
        self.shard_number, self.replication_factor = shard_number, replication_factor
        self.write_consistency_factor = write_consistency_factor
        self._read: dict[str, Any] = {} if read_consistency is None else {"consistency": read_consistency}
        self._local = getattr(client, "_client", None).__class__.__name__ == "QdrantLocal"
        self._efforts = EffortCache()

    @classmethod
    def connect(
        cls,
        url: str,
        api_key: str | None = None,
        *,
        shard_number: int = 1,
        replication_factor: int = 1,
        write_consistency_factor: int = 1,
        read_consistency: str | int | None = None,
        timeout: int = 30,
    ) -> ServerVectorStore:
        """A store on the Qdrant server at ``url`` (no request is made until first use)."""
        client = QdrantClient(url=url, api_key=api_key, timeout=timeout, check_compatibility=False)
        return cls(
            client,
            shard_number=shard_number,
            replication_factor=replication_factor,
            write_consistency_factor=write_consistency_factor,
            read_consistency=read_consistency,
            where=url,
        )

    # --- collections -------------------------------------------------------------------------------------

    def ensure_collection(self, name: str, vectors: Mapping[str, int], sparse: Collection[str] = ()) -> None:
        check_names(vectors, sparse)
        if self.resolve_alias(name) is not None:
            raise ValidationError(f"{name!r} is an alias, not a collection", path="name")
        with self._errors(name):
            if not self.client.collection_exists(name):
                config = {
                    n: models.VectorParams(size=s, distance=models.Distance.COSINE)
                    for n, s in vectors.items()
                }
                try:
                    self.client.create_collection(
                        name,
                        vectors_config=config,
                        sparse_vectors_config={n: sparse_params() for n in sparse} or None,
                        shard_number=self.shard_number,
                        replication_factor=self.replication_factor,
                        write_consistency_factor=self.write_consistency_factor,
                    )
                    return
                except UnexpectedResponse as exc:  # created concurrently by another process
                    if exc.status_code != 409:
                        raise
            have, have_sparse = self.vector_sizes(name), set(self.sparse_vectors(name))
            add_vectors(self.client, name, have, have_sparse, vectors, sparse)

    def sparse_vectors(self, name: str) -> list[str]:
        with self._errors(name):
            params = self.client.get_collection(name).config.params.sparse_vectors
        return sorted(params or {})

    def delete_vector(self, name: str, vector: str) -> None:
        if vector not in self.vector_sizes(name) and vector not in self.sparse_vectors(name):
            return
        with self._errors(name):
            self.client.delete_vector_name(self.resolve_alias(name) or name, vector)

    def clear_vector(self, name: str, vector: str) -> None:
        if vector in self.vector_sizes(name) or vector in self.sparse_vectors(name):
            with self._errors(name):
                self.client.delete_vectors(name, [vector], models.FilterSelector(filter=models.Filter()))

    def vector_sizes(self, name: str) -> dict[str, int]:
        with self._errors(name):
            params = self.client.get_collection(name).config.params.vectors
        if isinstance(params, models.VectorParams):
            return {"": params.size}
        return {n: p.size for n, p in (params or {}).items()}

    def ensure_index(self, name: str, field: str, type: FieldType) -> None:
        with self._errors(name):
            if field in (self.client.get_collection(name).payload_schema or {}):
                return
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Payload indexes have no effect")
                self.client.create_payload_index(name, field, INDEX_TYPES[type], wait=True)

    def collection_exists(self, name: str) -> bool:
        with self._errors(name):
            return self.client.collection_exists(name) or self.resolve_alias(name) is not None

    def delete_collection(self, name: str) -> None:
        if self.resolve_alias(name) is not None:
            raise ValidationError(f"{name!r} is an alias; delete the alias or its collection", path="name")
        with self._errors(name):
            if self.client.collection_exists(name):
                for alias in self.client.get_collection_aliases(name).aliases:
                    self.delete_alias(alias.alias_name)
                self.client.delete_collection(name)

    def list_collections(self) -> list[str]:
        with self._errors("*"):
            return sorted(c.name for c in self.client.get_collections().collections)

    # --- aliases -----------------------------------------------------------------------------------------

    def set_alias(self, alias: str, collection: str) -> None:
        if alias in self.list_collections():
            raise ValidationError(f"alias {alias!r}: a collection has that name", path="alias")
        if collection not in self.list_collections():
            raise CollectionNotFoundError(f"collection {collection!r} does not exist")
        with self._errors(collection):
            self.client.update_collection_aliases(alias_ops(alias, collection, self.resolve_alias(alias)))

    def resolve_alias(self, alias: str) -> str | None:
        with self._errors(alias):
            for a in self.client.get_aliases().aliases:
                if a.alias_name == alias:
                    return a.collection_name
        return None

    def delete_alias(self, alias: str) -> None:
        if self.resolve_alias(alias) is None:
            return
        op = models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
        with self._errors(alias):
            self.client.update_collection_aliases([op])

    # --- metadata ----------------------------------------------------------------------------------------

    def get_metadata(self, name: str) -> dict[str, Any]:
        with self._errors(name):
            return dict(self.client.get_collection(name).config.metadata or {})

    def set_metadata(self, name: str, metadata: Mapping[str, Any]) -> None:
        with self._errors(name):
            self.client.update_collection(self.resolve_alias(name) or name, metadata=dict(metadata))
        self._efforts.clear()

    def effort(self, name: str, using: str) -> Effort | None:
        """The calibrated effort of dense queries on ``using`` (metadata re-read at most every 30 s)."""
        return self._efforts.get(name, using, self.get_metadata)

    def sample(self, name: str, using: str, n: int) -> list[Hit]:
        only = models.Filter(must=[models.HasVectorCondition(has_vector=using)])
        query = models.SampleQuery(sample=models.Sample.RANDOM)
        with self._errors(name):
            found = self.client.query_points(
                name, query=query, query_filter=only, limit=n, with_vectors=[using]
            )
        return [server_hit(p, 0.0, True) for p in found.points]

    def graph(self, name: str) -> Graph:
        with self._errors(name):
            hnsw = self.client.get_collection(name).config.hnsw_config
        return Graph(hnsw.m, hnsw.ef_construct)

    def rebuild_graph(self, name: str, graph: Graph) -> None:
        hnsw = models.HnswConfigDiff(m=graph.m, ef_construct=graph.ef_construct)
        with self._errors(name):
            self.client.update_collection(self.resolve_alias(name) or name, hnsw_config=hnsw)

    def indexed_vectors(self, name: str) -> int | None:
        with self._errors(name):
            info = self.client.get_collection(name)
        return info.indexed_vectors_count if info.status == models.CollectionStatus.GREEN else None

    # --- points ------------------------------------------------------------------------------------------

    def upsert(self, name: str, points: Sequence[PointRecord]) -> None:
        for start in range(0, len(points), UPSERT_CHUNK):
            chunk = [
                models.PointStruct(
                    id=p.id,
                    vector={k: server_vector(v) for k, v in p.vectors.items()},
                    payload={k: payload_value(v) for k, v in p.payload.items()},
                )
                for p in points[start : start + UPSERT_CHUNK]
            ]
            with self._errors(name):
                self.client.upsert(name, chunk, wait=True)

    def update_vectors(self, name: str, vectors: Mapping[int, Mapping[str, AnyVector]]) -> None:
        items = list(vectors.items())
        for start in range(0, len(items), UPSERT_CHUNK):
            chunk = [
                models.PointVectors(id=pid, vector={k: server_vector(v) for k, v in named.items()})
                for pid, named in items[start : start + UPSERT_CHUNK]
            ]
            with self._errors(name):
                self.client.update_vectors(name, chunk, wait=True)

    def set_payload(self, name: str, ids: Sequence[int], payload: Mapping[str, Any]) -> None:
        if ids:
            values = {k: payload_value(v) for k, v in payload.items()}
            with self._errors(name):
                self.client.set_payload(name, values, points=list(ids), wait=True)

    def delete(self, name: str, ids: Sequence[int]) -> None:
        if ids:
            with self._errors(name):
                self.client.delete(name, models.PointIdsList(points=list(ids)), wait=True)

    def retrieve(self, name: str, ids: Sequence[int], with_vectors: bool | list[str] = False) -> list[Hit]:
        if not ids:
            return []
        with self._errors(name):
            records = self.client.retrieve(
                name, list(ids), with_payload=True, with_vectors=with_vectors, **self._read
            )
        return order_like(ids, [server_hit(r, 0.0, bool(with_vectors)) for r in records])

    def scroll(
        self, name: str, batch: int = 1000, with_vectors: bool = False, filter: FilterExpr | None = None
    ) -> Iterator[Hit]:
        qfilter = to_qdrant_filter(filter)
        offset: Any = None
        while True:
            with self._errors(name):
                records, offset = self.client.scroll(
                    name, qfilter, limit=batch, offset=offset, with_payload=True, with_vectors=with_vectors
                )
            for r in records:
                yield server_hit(r, 0.0, with_vectors)
            if offset is None:
                return

    def count(self, name: str, filter: FilterExpr | None = None) -> int:
        with self._errors(name):
            return self.client.count(name, to_qdrant_filter(filter), exact=True).count

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
        check_limit(limit, offset)
        with self._errors(name):
            points = self.client.query_points(
                name,
                **self._read,
                search_params=None if isinstance(vector, Sparse) else self._params(name, using, search),
                query=server_vector(vector),
                using=using,
                limit=limit,
                offset=offset or None,
                query_filter=to_qdrant_filter(filter, exclude_ids),
                with_payload=True,
                with_vectors=with_vectors,
            ).points
        return [server_hit(p, p.score, with_vectors) for p in points]

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
        qf = to_qdrant_filter(filter, exclude_ids)
        params = {using: self._params(name, using) for _, using, _ in queries}
        prefetch, fusion = fused_query(queries, limit, qf, prefetch_limit, method, params)
        with self._errors(name):
            points = self.client.query_points(
                name, prefetch=prefetch, query=fusion, query_filter=qf, limit=limit, with_payload=with_payload
            ).points
        return [server_hit(p, p.score, False) for p in points]

    def query_mmr(
        self,
        name: str,
        vector: AnyVector,
        using: str,
        limit: int,
        diversity: float = 0.5,
        candidates_limit: int = 100,
        filter: FilterExpr | None = None,
        exclude_ids: Collection[int] = (),
    ) -> list[Hit]:
        candidates = check_mmr(diversity, limit, candidates_limit)
        if isinstance(vector, Sparse):
            raise ValidationError("diversity (MMR) needs a dense vector", path="diversity")
        query = models.NearestQuery(
            nearest=as_list(vector), mmr=models.Mmr(diversity=diversity, candidates_limit=candidates)
        )
        with self._errors(name):
            points = self.client.query_points(
                name,
                **self._read,
                query=query,
                using=using,
                limit=limit,
                query_filter=to_qdrant_filter(filter, exclude_ids),
                with_payload=True,
                search_params=self._params(name, using),
            ).points
        return [server_hit(p, p.score, False) for p in points]

    def close(self) -> None:
        if self._owns_client:
            with contextlib.suppress(Exception):
                self.client.close()

    def __enter__(self) -> ServerVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _errors(self, name: str) -> contextlib.AbstractContextManager[None]:
        return server_errors(name, self._where, self._local)

    def _params(self, name: str, using: str, search: Effort | None = None) -> models.SearchParams | None:
        """The search parameters of a dense query on ``using`` (none in local mode: it searches exactly)."""
        if self._local:
            return None
        effort = search or self.effort(name, using)
        return None if effort is None else qdrant_params(effort)
