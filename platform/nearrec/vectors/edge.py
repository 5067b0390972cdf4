"""Embedded vector store: the real Qdrant engine in-process through qdrant-edge-py.

Layout under ``root`` (``<data_dir>/vectors``)::

    .lock                      flock'ed by the owning process, holds its pid
    aliases.json               {"alias": "collection", ...}
    <collection>/shard/        one EdgeShard per collection
    <collection>/collection.json   {"vectors": {"text": 384}, "sparse": ["ease"], "metadata": {...}}

A collection exists once its ``collection.json`` is written (last step of creation), so a crash half-way
leaves a directory that the next ``ensure_collection`` replaces. The directory belongs to one process: the
constructor takes an exclusive ``flock`` and raises ``VectorStoreLockedError`` if another process holds it.
Within the process the store is thread safe: queries and writes go straight to the shard (which allows
concurrent use); creating, deleting, aliasing and metadata changes are serialised by a lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeSparseVectorParams,
    EdgeVectorParams,
    Fusion,
    Mmr,
    Point,
    PointVectors,
    Prefetch,
    Query,
    QueryRequest,
    ScrollRequest,
    SparseVector,
    UpdateOperation,
)
from qdrant_edge import PayloadSchemaType as EdgeSchema

from nearrec.errors import (
    ModelMismatchError,
    NearrecError,
    StoreUnavailableError,
    ValidationError,
    VectorStoreLockedError,
)
from nearrec.filters import FieldType, FilterExpr, payload_value
from nearrec.vectors.base import (
    RRF_K,
    UPSERT_CHUNK,
    AnyVector,
    CollectionNotFoundError,
    FusedQuery,
    FusionMethod,
    Hit,
    PointRecord,
    Sparse,
    as_list,
    check_fusion,
    check_limit,
    check_mmr,
    check_names,
    order_like,
)
from nearrec.vectors.filters_edge import to_edge_filter

_NAME = re.compile(r"[A-Za-z0-9_\-]{1,200}")
_INDEX_TYPES = {
    FieldType.KEYWORD: EdgeSchema.Keyword,
    FieldType.INTEGER: EdgeSchema.Integer,
    FieldType.FLOAT: EdgeSchema.Float,
    FieldType.BOOL: EdgeSchema.Integer,  # booleans are stored as 0 / 1
}
_BAD_INPUT = ("dimension error", "not existing vector", "wrong input", "bad input", "bad request")


@dataclass
class _Collection:
    shard: EdgeShard
    vectors: dict[str, int]
    metadata: dict[str, Any]
    sparse: set[str]


class EdgeVectorStore:
    """VectorStore on qdrant-edge shards persisted under ``root``."""

    def __init__(self, root: Path | str, *, max_search_threads: int | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _acquire_lock(self.root)
        self._guard = threading.RLock()
        self._max_search_threads = max_search_threads
        self._open: dict[str, _Collection] = {}
        self._aliases: dict[str, str] = _read_json(self.root / "aliases.json", {})
        self._closed = False

    # --- collections -------------------------------------------------------------------------------------

    def ensure_collection(self, name: str, vectors: Mapping[str, int], sparse: Collection[str] = ()) -> None:
        _check_name(name)
        check_names(vectors, sparse)
        for vname, size in vectors.items():
            _check_name(vname)
            if size < 1:
                raise ValidationError(f"vector {vname!r}: size must be positive, got {size}", path="vectors")
        for vname in sparse:
            _check_name(vname)
        with self._guard:
            if name in self._aliases:
                raise ValidationError(f"{name!r} is an alias, not a collection", path="name")
            col = self._get(name, missing_ok=True)
            if col is None:
                self._create(name, dict(vectors), set(sparse))
                return
            for vname, size in vectors.items():
                have = col.vectors.get(vname)
                if have is None:
                    with _edge_errors(name):
                        col.shard.update(UpdateOperation.create_dense_vector(vname, size, Distance.Cosine))
                    col.vectors[vname] = size
                    self._write_config(name, col)
                elif have != size:
                    raise ModelMismatchError(
                        f"collection {name!r}: vector {vname!r} has {have} dimensions, {size} were asked; "
                        "run `nearrec reindex`"
                    )
            for vname in sparse:
                if vname in col.vectors:
                    raise ModelMismatchError(f"collection {name!r}: vector {vname!r} is dense, not sparse")
                if vname not in col.sparse:
                    with _edge_errors(name):
                        col.shard.update(UpdateOperation.create_sparse_vector(vname))
                    col.sparse.add(vname)
                    self._write_config(name, col)

    def vector_sizes(self, name: str) -> dict[str, int]:
        return dict(self._col(name).vectors)

    def sparse_vectors(self, name: str) -> list[str]:
        return sorted(self._col(name).sparse)

    def delete_vector(self, name: str, vector: str) -> None:
        real = self._aliases.get(name, name)
        with self._guard:
            col = self._col(real)
            if vector not in col.vectors and vector not in col.sparse:
                return
            with _edge_errors(name):
                col.shard.update(UpdateOperation.delete_vector_name(vector))
            col.vectors.pop(vector, None)
            col.sparse.discard(vector)
            self._write_config(real, col)

    def ensure_index(self, name: str, field: str, type: FieldType) -> None:
        col = self._col(name)
        with self._guard, _edge_errors(name):
            if field not in col.shard.info().payload_schema:
                col.shard.update(UpdateOperation.create_field_index(field, _INDEX_TYPES[type]))

    def collection_exists(self, name: str) -> bool:
        return self._get(self._aliases.get(name, name), missing_ok=True) is not None

    def delete_collection(self, name: str) -> None:
        with self._guard:
            if name in self._aliases:
                raise ValidationError(
                    f"{name!r} is an alias; delete the alias or its collection", path="name"
                )
            _check_name(name)
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
        _check_name(alias)
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
            merged = dict(col.metadata)
            for key, value in json.loads(json.dumps(dict(metadata))).items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            col.metadata = merged
            self._write_config(real, col)

    # --- points ------------------------------------------------------------------------------------------

    def upsert(self, name: str, points: Sequence[PointRecord]) -> None:
        col = self._col(name)
        for start in range(0, len(points), UPSERT_CHUNK):
            chunk = [
                Point(
                    p.id,
                    {k: _vector(v) for k, v in p.vectors.items()},
                    {k: payload_value(v) for k, v in p.payload.items()},
                )
                for p in points[start : start + UPSERT_CHUNK]
            ]
            with _edge_errors(name):
                col.shard.update(UpdateOperation.upsert_points(chunk))

    def update_vectors(self, name: str, vectors: Mapping[int, Mapping[str, AnyVector]]) -> None:
        col = self._col(name)
        items = list(vectors.items())
        for start in range(0, len(items), UPSERT_CHUNK):
            chunk = [
                PointVectors(pid, {k: _vector(v) for k, v in named.items()})
                for pid, named in items[start : start + UPSERT_CHUNK]
            ]
            with _edge_errors(name):
                col.shard.update(UpdateOperation.update_vectors(chunk))

    def set_payload(self, name: str, ids: Sequence[int], payload: Mapping[str, Any]) -> None:
        col = self._col(name)
        if ids:
            with _edge_errors(name):
                col.shard.update(
                    UpdateOperation.set_payload(list(ids), {k: payload_value(v) for k, v in payload.items()})
                )

    def delete(self, name: str, ids: Sequence[int]) -> None:
        col = self._col(name)
        if ids:
            with _edge_errors(name):
                col.shard.update(UpdateOperation.delete_points(list(ids)))

    def retrieve(self, name: str, ids: Sequence[int], with_vectors: bool = False) -> list[Hit]:
        col = self._col(name)
        if not ids:
            return []
        with _edge_errors(name):
            records = col.shard.retrieve(list(ids), with_payload=True, with_vector=with_vectors)
        hits = [_edge_hit(r, 0.0, with_vectors) for r in records]
        return order_like(ids, hits)

    def scroll(
        self, name: str, batch: int = 1000, with_vectors: bool = False, filter: FilterExpr | None = None
    ) -> Iterator[Hit]:
        col = self._col(name)
        edge_filter = to_edge_filter(filter)
        offset: Any = None
        while True:
            request = ScrollRequest(
                offset=offset, limit=batch, filter=edge_filter, with_payload=True, with_vector=with_vectors
            )
            with _edge_errors(name):
                records, offset = col.shard.scroll(request)
            for r in records:
                yield _edge_hit(r, 0.0, with_vectors)
            if offset is None:
                return

    def count(self, name: str, filter: FilterExpr | None = None) -> int:
        col = self._col(name)
        with _edge_errors(name):
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
    ) -> list[Hit]:
        check_limit(limit, offset)
        request = QueryRequest(
            limit=limit,
            offset=offset or None,
            query=Query.Nearest(_vector(vector), using=using),
            filter=to_edge_filter(filter, exclude_ids),
            with_payload=True,
            with_vector=with_vectors,
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
    ) -> list[Hit]:
        check_limit(limit)
        weights = check_fusion(queries, method)
        edge_filter = to_edge_filter(filter, exclude_ids)
        prefetches = [
            Prefetch(
                limit=max(prefetch_limit, limit),
                query=Query.Nearest(_vector(vector), using=using),
                filter=edge_filter,
            )
            for vector, using, _ in queries
        ]
        fusion: Any = Fusion.Rrf(k=RRF_K, weights=weights) if method == "rrf" else Fusion.Dbsf()
        request = QueryRequest(
            limit=limit, prefetches=prefetches, query=fusion, filter=edge_filter, with_payload=True
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
        candidates = check_mmr(diversity, limit, candidates_limit)
        if isinstance(vector, Sparse):
            raise ValidationError("diversity (MMR) needs a dense vector", path="diversity")
        mmr = Mmr(as_list(vector), lambda_=1.0 - diversity, candidates_limit=candidates, using=using)
        request = QueryRequest(
            limit=limit, query=mmr, filter=to_edge_filter(filter, exclude_ids), with_payload=True
        )
        return self._run(name, request, False)

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
        with _edge_errors(name):
            points = col.shard.query(request)
        return [_edge_hit(p, p.score, with_vectors) for p in points]

    def _col(self, name: str) -> _Collection:
        """The open collection behind ``name`` (alias or collection); hot path: two dict lookups."""
        col = self._open.get(self._aliases.get(name, name))
        if col is not None:
            return col
        found = self._get(self._aliases.get(name, name), missing_ok=False)
        assert found is not None
        return found

    def _get(self, name: str, missing_ok: bool) -> _Collection | None:
        col = self._open.get(name)
        if col is not None:
            return col
        if self._closed:
            raise StoreUnavailableError(f"the embedded vector store at {self.root} is closed")
        with self._guard:
            col = self._open.get(name)
            if col is not None:
                return col
            config = self.root / name / "collection.json" if _NAME.fullmatch(name) else None
            if config is None or not config.exists():
                if missing_ok:
                    return None
                raise CollectionNotFoundError(f"collection {name!r} does not exist")
            data = _read_json(config, {})
            with _edge_errors(name):
                shard = EdgeShard.load(str(self.root / name / "shard"), self._load_config())
            col = _Collection(
                shard,
                dict(data.get("vectors", {})),
                dict(data.get("metadata", {})),
                set(data.get("sparse", [])),
            )
            self._open[name] = col
            return col

    def _create(self, name: str, vectors: dict[str, int], sparse: set[str]) -> None:
        base = self.root / name
        shutil.rmtree(base, ignore_errors=True)  # leftovers of an interrupted creation
        base.mkdir(parents=True)
        with _edge_errors(name):
            params = {n: EdgeVectorParams(size=s, distance=Distance.Cosine) for n, s in vectors.items()}
            sparse_params = {n: EdgeSparseVectorParams() for n in sorted(sparse)} or None
            config = EdgeConfig(
                vectors=params or None,
                sparse_vectors=sparse_params,
                max_search_threads=self._max_search_threads,
            )
            shard = EdgeShard.create(str(base / "shard"), config)
        col = _Collection(shard, vectors, {}, sparse)
        self._write_config(name, col)
        self._open[name] = col

    def _load_config(self) -> EdgeConfig | None:
        if self._max_search_threads is None:
            return None  # keep everything as persisted
        return EdgeConfig(max_search_threads=self._max_search_threads)

    def _write_config(self, name: str, col: _Collection) -> None:
        _write_json(
            self.root / name / "collection.json",
            {"vectors": col.vectors, "sparse": sorted(col.sparse), "metadata": col.metadata},
        )

    def _save_aliases(self, aliases: dict[str, str]) -> None:
        _write_json(self.root / "aliases.json", aliases)
        self._aliases = aliases  # replaced, never mutated: readers need no lock


def _edge_hit(point: Any, score: float, with_vectors: bool) -> Hit:
    """A Hit from a shard record / scored point (named vectors are always a dict here)."""
    vector = point.vector if with_vectors and isinstance(point.vector, dict) else None
    if vector is None:
        return Hit(int(point.id), score, point.payload or {}, None)
    dense = {k: v for k, v in vector.items() if not isinstance(v, SparseVector)}
    sparse = {k: Sparse(v.indices, v.values) for k, v in vector.items() if isinstance(v, SparseVector)}
    return Hit(int(point.id), score, point.payload or {}, dense, sparse)


def _vector(vector: AnyVector) -> Any:
    if isinstance(vector, Sparse):
        return SparseVector([int(i) for i in vector.indices], [float(v) for v in vector.values])
    return as_list(vector)


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValidationError(f"invalid name {name!r} (letters, digits, '_' and '-')", path="name")


def _acquire_lock(root: Path) -> int:
    path = root / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise VectorStoreLockedError(
            f"the embedded vector store at {root} is used by process {owner}; "
            "stop it or set NEARREC_QDRANT_URL"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:
        raise StoreUnavailableError(f"cannot read {path}: {exc}") from exc


def _write_json(path: Path, data: Any) -> None:
    """Write atomically: temp file, fsync, os.replace."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _edge_errors(name: str) -> Iterator[None]:
    """Translate qdrant-edge errors (plain ``Exception``) into nearrec errors."""
    try:
        yield
    except (NearrecError, AttributeError, AssertionError, NameError):
        raise
    except (TypeError, ValueError, OverflowError) as exc:  # arguments the bindings cannot convert
        raise ValidationError(f"collection {name!r}: {exc}") from exc
    except Exception as exc:
        text = str(exc)
        if any(marker in text.lower() for marker in _BAD_INPUT):
            raise ValidationError(f"collection {name!r}: {text}") from exc
        raise StoreUnavailableError(f"embedded vector store, collection {name!r}: {text}") from exc
