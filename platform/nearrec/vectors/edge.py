"""Embedded vector store: the real Qdrant engine in-process through qdrant-edge-py.

Layout under ``root`` (``<data_dir>/vectors``)::

    .lock                      flock'ed by the owning process, holds its pid
    aliases.json               {"alias": "collection", ...}
    <collection>/shard/        one EdgeShard per collection (``shard-b/`` after an index build, see below)
    <collection>/collection.json   {"vectors": {"text": 384}, "sparse": ["ii1"], "metadata": {}, "shard": ...}

A collection exists once its ``collection.json`` is written (a crash half-way leaves a directory that the next
``ensure_collection`` replaces). The directory belongs to one process (an exclusive ``flock``, else
``VectorStoreLockedError``). Within it the store is thread safe: queries and writes go straight to the shard;
creating, deleting, aliasing and metadata changes are serialised by a lock; writes are journalled while an
index build runs (:mod:`nearrec.vectors.edge_index`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from qdrant_edge import (
    CountRequest,
    Filter,
    HasVectorCondition,
    Query,
    QueryRequest,
    Sample,
    UpdateOperation,
)

from nearrec.errors import StoreUnavailableError, ValidationError
from nearrec.filters import FieldType, FilterExpr, payload_value
from nearrec.vectors import edge_index
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
    check_limit,
    order_like,
)
from nearrec.vectors.edge_requests import (
    edge_hit,
    edge_vector,
    fused_request,
    mmr_request,
    search_params,
    upsert_ops,
    vector_ops,
)
from nearrec.vectors.edge_support import (
    INDEX_TYPES,
    EdgeCollection,
    acquire_lock,
    add_named_vectors,
    check_collection_args,
    check_name,
    edge_errors,
    load_config,
    read_json,
    valid_name,
    write_json,
)
from nearrec.vectors.filters_edge import to_edge_filter


class EdgeVectorStore:
    """VectorStore on qdrant-edge shards persisted under ``root``."""

    def __init__(
        self,
        root: Path | str,
        *,
        max_search_threads: int | None = None,
        indexing_threshold_kb: int | None = None,
    ) -> None:
        """``indexing_threshold_kb``: segment size above which :meth:`build_index` builds an HNSW graph, for
        new collections (None: Qdrant's 10 MB, ~6,500 vectors of 384 floats; below it, exact search)."""
        self.root = Path(root)
        self._indexing_threshold_kb = indexing_threshold_kb
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd = acquire_lock(self.root)
        self._guard = threading.RLock()
        self._max_search_threads = max_search_threads
        self._open: dict[str, EdgeCollection] = {}
        self._aliases: dict[str, str] = read_json(self.root / "aliases.json", {})
        self._closed = False

    # --- collections -------------------------------------------------------------------------------------

    def ensure_collection(self, name: str, vectors: Mapping[str, int], sparse: Collection[str] = ()) -> None:
        check_collection_args(name, vectors, sparse)
        with self._guard:
            if name in self._aliases:
                raise ValidationError(f"{name!r} is an alias, not a collection", path="name")
            col = self._get(name, missing_ok=True)
            if col is None:
                threads, threshold = self._max_search_threads, self._indexing_threshold_kb
                self._open[name] = EdgeCollection.create(
                    self.root / name, name, dict(vectors), set(sparse), threads, threshold
                )
                return
            if add_named_vectors(name, col, vectors, sparse):
                col.save(self.root / name)

    def vector_sizes(self, name: str) -> dict[str, int]:
        return dict(self._col(name).vectors)

    def sparse_vectors(self, name: str) -> list[str]:
        return sorted(self._col(name).sparse)

    def delete_vector(self, name: str, vector: str) -> None:
        real = self._aliases.get(name, name)
        with self._guard:
            col = self._col(real)
            if col.drop_vector(name, vector):
                col.save(self.root / real)

    def clear_vector(self, name: str, vector: str) -> None:
        self._col(name).clear_vector(name, vector, [h.id for h in self.scroll(name, batch=UPSERT_CHUNK)])

    def ensure_index(self, name: str, field: str, type: FieldType) -> None:
        col = self._col(name)
        with self._guard, edge_errors(name):
            if field not in col.shard.info().payload_schema:
                col.write(name, UpdateOperation.create_field_index(field, INDEX_TYPES[type]), (), schema=True)

    def collection_exists(self, name: str) -> bool:
        return self._get(self._aliases.get(name, name), missing_ok=True) is not None

    def delete_collection(self, name: str) -> None:
        with self._guard:
            if name in self._aliases:
                raise ValidationError(
                    f"{name!r} is an alias; delete the alias or its collection", path="name"
                )
            check_name(name)
            col = self._open.pop(name, None)
            if col is not None:
                with contextlib.suppress(Exception):
                    col.shard.close()
            shutil.rmtree(self.root / name, ignore_errors=True)
            kept = {a: c for a, c in self._aliases.items() if c != name}
            if kept != self._aliases:
                self._save_aliases(kept)

    def list_collections(self) -> list[str]:
        return sorted(p.parent.name for p in self.root.glob("*/collection.json"))

    # --- aliases -----------------------------------------------------------------------------------------

    def set_alias(self, alias: str, collection: str) -> None:
        check_name(alias)
        with self._guard:
            if (self.root / alias / "collection.json").exists():
                raise ValidationError(f"alias {alias!r}: a collection has that name", path="alias")
            if collection in self._aliases or self._get(collection, missing_ok=True) is None:
                raise CollectionNotFoundError(f"collection {collection!r} does not exist")
            self._save_aliases({**self._aliases, alias: collection})

    def resolve_alias(self, alias: str) -> str | None:
        return self._aliases.get(alias)

    def delete_alias(self, alias: str) -> None:
        with self._guard:
            if alias in self._aliases:
                self._save_aliases({a: c for a, c in self._aliases.items() if a != alias})

    # --- metadata ----------------------------------------------------------------------------------------

    def get_metadata(self, name: str) -> dict[str, Any]:
        return json.loads(json.dumps(self._col(name).metadata))  # type: ignore[no-any-return]

    def set_metadata(self, name: str, metadata: Mapping[str, Any]) -> None:
        real = self._aliases.get(name, name)
        with self._guard:
            col = self._col(real)
            merged = {**col.metadata, **json.loads(json.dumps(dict(metadata)))}
            col.set_metadata({k: v for k, v in merged.items() if v is not None})
            col.save(self.root / real)

    # --- points ------------------------------------------------------------------------------------------

    def upsert(self, name: str, points: Sequence[PointRecord]) -> None:
        col = self._col(name)
        for op, ids in upsert_ops(points):
            col.write(name, op, ids)

    def update_vectors(self, name: str, vectors: Mapping[int, Mapping[str, AnyVector]]) -> None:
        col = self._col(name)
        for op, ids in vector_ops(vectors):
            col.write(name, op, ids)

    def set_payload(self, name: str, ids: Sequence[int], payload: Mapping[str, Any]) -> None:
        col = self._col(name)
        if ids:
            values = {k: payload_value(v) for k, v in payload.items()}
            col.write(name, UpdateOperation.set_payload(list(ids), values), ids)

    def delete(self, name: str, ids: Sequence[int]) -> None:
        col = self._col(name)
        if ids:
            col.write(name, UpdateOperation.delete_points(list(ids)), ids)

    def retrieve(self, name: str, ids: Sequence[int], with_vectors: bool | list[str] = False) -> list[Hit]:
        col = self._col(name)
        if not ids:
            return []
        with edge_errors(name):
            records = col.shard.retrieve(list(ids), with_payload=True, with_vector=with_vectors)
        hits = [edge_hit(r, 0.0, bool(with_vectors)) for r in records]
        return order_like(ids, hits)

    def scroll(
        self, name: str, batch: int = 1000, with_vectors: bool = False, filter: FilterExpr | None = None
    ) -> Iterator[Hit]:
        return self._col(name).scroll(name, batch, with_vectors, filter)

    def count(self, name: str, filter: FilterExpr | None = None) -> int:
        col = self._col(name)
        with edge_errors(name):
            return col.shard.count(CountRequest(exact=True, filter=to_edge_filter(filter)))

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
        col = self._col(name)
        request = QueryRequest(
            limit=limit,
            offset=offset or None,
            query=Query.Nearest(edge_vector(vector), using=using),
            filter=to_edge_filter(filter, exclude_ids),
            with_payload=True,
            with_vector=with_vectors,
            params=col.efforts.get(using) if search is None else search_params(search),
        )
        return self._run(name, request, with_vectors)

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
        efforts = self._col(name).efforts
        request = fused_request(
            queries, limit, filter, exclude_ids, prefetch_limit, method, efforts, with_payload
        )
        return self._run(name, request, False)

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
        params = self._col(name).efforts.get(using)
        request = mmr_request(vector, using, limit, diversity, candidates_limit, filter, exclude_ids, params)
        return self._run(name, request, False)

    # --- search effort and index build (see nearrec.vectors.calibrate and nearrec.vectors.edge_index) ----

    def sample(self, name: str, using: str, n: int) -> list[Hit]:
        only, vector = Filter(must=[HasVectorCondition(using)]), [using]
        request = QueryRequest(limit=max(n, 1), query=Sample.Random, filter=only, with_vector=vector)
        return self._run(name, request, True)

    def indexed_vectors(self, name: str) -> int | None:
        col = self._col(name)
        with edge_errors(name):
            return None if col.building else col.shard.info().indexed_vectors_count

    def unindexed_points(self, name: str) -> int:
        """Vectors of ``name`` not yet in an HNSW graph (searched exactly until :meth:`build_index`)."""
        return self._col(name).unindexed(name)

    def build_index(self, name: str, graph: Graph | None = None) -> edge_index.BuildReport:
        """Build the HNSW index of ``name`` in a child process on a copy of its shard, then switch to it;
        queries go on meanwhile, writes wait only while the shard is copied and while the switch replays the
        writes made during the build. One build per collection at a time. ``graph``: rebuild the whole
        graph with these parameters (else the shard's own; only the unindexed points are indexed)."""
        real = self._aliases.get(name, name)
        col = self._col(real)
        with self._guard:
            if col.building:
                raise ValidationError(f"collection {name!r}: an index build is already running")
            col.building = True
        try:
            config = load_config(self._max_search_threads)
            return edge_index.build(col, self.root / real, real, config, self._switched, graph)
        finally:
            col.journal, col.building = None, False

    def graph(self, name: str) -> Graph:
        return self._col(name).graph

    def rebuild_graph(self, name: str, graph: Graph) -> None:
        self.build_index(name, graph)

    def _switched(self, name: str, col: EdgeCollection) -> None:
        with self._guard:
            col.save(self.root / name)

    def close(self) -> None:
        with self._guard:
            if self._closed:
                return
            self._closed = True
            for col in self._open.values():
                with contextlib.suppress(Exception):
                    col.shard.close()
            self._open.clear()
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)

    def __enter__(self) -> EdgeVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ---------------------------------------------------------------------------------------

    def _run(self, name: str, request: QueryRequest, with_vectors: bool) -> list[Hit]:
        col = self._col(name)
        with edge_errors(name):
            points = col.shard.query(request)
        return [edge_hit(p, p.score, with_vectors) for p in points]

    def _col(self, name: str) -> EdgeCollection:
        """The open collection behind ``name`` (alias or collection); hot path: two dict lookups."""
        real = self._aliases.get(name, name)
        col = self._open.get(real) or self._get(real, missing_ok=False)
        assert col is not None
        return col

    def _get(self, name: str, missing_ok: bool) -> EdgeCollection | None:
        col = self._open.get(name)
        if col is not None:
            return col
        if self._closed:
            raise StoreUnavailableError(f"the embedded vector store at {self.root} is closed")
        with self._guard:
            col = self._open.get(name)
            if col is not None:
                return col
            config = self.root / name / "collection.json" if valid_name(name) else None
            if config is None or not config.exists():
                if missing_ok:
                    return None
                raise CollectionNotFoundError(f"collection {name!r} does not exist")
            col = EdgeCollection.load(self.root / name, name, load_config(self._max_search_threads))
            self._open[name] = col
            return col

    def _save_aliases(self, aliases: dict[str, str]) -> None:
        write_json(self.root / "aliases.json", aliases)
        self._aliases = aliases  # replaced, never mutated: readers need no lock
