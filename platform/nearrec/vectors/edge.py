"""Embedded vector store: the real Qdrant engine in-process through qdrant-edge-py.

Layout under ``root`` (``<data_dir>/vectors``)::

    .lock                      flock'ed by the owning process, holds its pid
    aliases.json               {"alias": "collection", ...}
    <collection>/shard/        one EdgeShard per collection
    <collection>/collection.json   {"vectors": {"text": 384}, "metadata": {...}}

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
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeOptimizersConfig,
    EdgeShard,
    EdgeVectorParams,
    Mmr,
    Point,
    PointVectors,
    Query,
    QueryRequest,
    ScrollRequest,
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
from nearrec.vectors import edge_index
from nearrec.vectors.base import (
    UPSERT_CHUNK,
    CollectionNotFoundError,
    Hit,
    PointRecord,
    VectorLike,
    as_list,
    check_limit,
    check_mmr,
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
    shard_dir: str = "shard"
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    journal: set[int] | None = None  # ids written while an index build runs (see edge_index)
    schema_ops: list[UpdateOperation] = field(default_factory=list)  # index / vector changes meanwhile
    building: bool = False


class EdgeVectorStore:
    """VectorStore on qdrant-edge shards persisted under ``root``."""

    def __init__(
        self,
        root: Path | str,
        *,
        max_search_threads: int | None = None,
        indexing_threshold_kb: int | None = None,
    ) -> None:
        """``indexing_threshold_kb``: vectors per segment (in KB) above which :meth:`build_index` builds an
        HNSW graph, for collections created from now on (None: Qdrant's default, 10 MB, ~6,500 vectors of
        384 floats; below it a segment is searched exactly)."""
        self.root = Path(root)
        self._indexing_threshold_kb = indexing_threshold_kb
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _acquire_lock(self.root)
        self._guard = threading.RLock()
        self._max_search_threads = max_search_threads
        self._open: dict[str, _Collection] = {}
        self._aliases: dict[str, str] = _read_json(self.root / "aliases.json", {})
        self._closed = False

    # --- collections -------------------------------------------------------------------------------------

    def ensure_collection(self, name: str, vectors: Mapping[str, int]) -> None:
        _check_name(name)
        if not vectors:
            raise ValidationError("a collection needs at least one named vector", path="vectors")
        for vname, size in vectors.items():
            _check_name(vname)
            if size < 1:
                raise ValidationError(f"vector {vname!r}: size must be positive, got {size}", path="vectors")
        with self._guard:
            if name in self._aliases:
                raise ValidationError(f"{name!r} is an alias, not a collection", path="name")
            col = self._get(name, missing_ok=True)
            if col is None:
                self._create(name, dict(vectors))
                return
            for vname, size in vectors.items():
                have = col.vectors.get(vname)
                if have is None:
                    op = UpdateOperation.create_dense_vector(vname, size, Distance.Cosine)
                    self._write(col, name, op, (), schema=True)
                    col.vectors[vname] = size
                    self._write_config(name, col)
                elif have != size:
                    raise ModelMismatchError(
                        f"collection {name!r}: vector {vname!r} has {have} dimensions, {size} were asked; "
                        "run `nearrec reindex`"
                    )

    def vector_sizes(self, name: str) -> dict[str, int]:
        return dict(self._col(name).vectors)

    def ensure_index(self, name: str, field: str, type: FieldType) -> None:
        col = self._col(name)
        with self._guard, _edge_errors(name):
            if field not in col.shard.info().payload_schema:
                op = UpdateOperation.create_field_index(field, _INDEX_TYPES[type])
                self._write(col, name, op, (), schema=True)

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
                    {k: as_list(v) for k, v in p.vectors.items()},
                    {k: payload_value(v) for k, v in p.payload.items()},
                )
                for p in points[start : start + UPSERT_CHUNK]
            ]
            self._write(col, name, UpdateOperation.upsert_points(chunk), [int(p.id) for p in chunk])

    def update_vectors(self, name: str, vectors: Mapping[int, Mapping[str, VectorLike]]) -> None:
        col = self._col(name)
        items = list(vectors.items())
        for start in range(0, len(items), UPSERT_CHUNK):
            chunk = [
                PointVectors(pid, {k: as_list(v) for k, v in named.items()})
                for pid, named in items[start : start + UPSERT_CHUNK]
            ]
            self._write(
                col,
                name,
                UpdateOperation.update_vectors(chunk),
                [pid for pid, _ in items[start : start + UPSERT_CHUNK]],
            )

    def set_payload(self, name: str, ids: Sequence[int], payload: Mapping[str, Any]) -> None:
        col = self._col(name)
        if ids:
            values = {k: payload_value(v) for k, v in payload.items()}
            self._write(col, name, UpdateOperation.set_payload(list(ids), values), ids)

    def delete(self, name: str, ids: Sequence[int]) -> None:
        col = self._col(name)
        if ids:
            self._write(col, name, UpdateOperation.delete_points(list(ids)), ids)

    def retrieve(self, name: str, ids: Sequence[int], with_vectors: bool = False) -> list[Hit]:
        col = self._col(name)
        if not ids:
            return []
        with _edge_errors(name):
            records = col.shard.retrieve(list(ids), with_payload=True, with_vector=with_vectors)
        hits = [
            Hit(int(r.id), 0.0, r.payload or {}, _named(r.vector) if with_vectors else None) for r in records
        ]
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
                yield Hit(int(r.id), 0.0, r.payload or {}, _named(r.vector) if with_vectors else None)
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
        vector: VectorLike,
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
            query=Query.Nearest(as_list(vector), using=using),
            filter=to_edge_filter(filter, exclude_ids),
            with_payload=True,
            with_vector=with_vectors,
        )
        return self._run(name, request, with_vectors)

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
        candidates = check_mmr(diversity, limit, candidates_limit)
        mmr = Mmr(as_list(vector), lambda_=1.0 - diversity, candidates_limit=candidates, using=using)
        request = QueryRequest(
            limit=limit, query=mmr, filter=to_edge_filter(filter, exclude_ids), with_payload=True
        )
        return self._run(name, request, False)

    # --- index build (see nearrec.vectors.edge_index) ----------------------------------------------------

    def unindexed_points(self, name: str) -> int:
        """Vectors of ``name`` not yet in an HNSW graph (searched exactly until :meth:`build_index`)."""
        col = self._col(name)
        with _edge_errors(name):
            info = col.shard.info()
        return max(0, info.points_count * len(col.vectors) - info.indexed_vectors_count)

    def build_index(self, name: str) -> edge_index.BuildReport:
        """Build the HNSW index of ``name`` in a child process on a copy of its shard, then switch to it;
        queries go on meanwhile, writes wait only while the shard is copied and while the switch replays the
        writes made during the build. One build per collection at a time."""
        real = self._aliases.get(name, name)
        col = self._col(real)
        with self._guard:
            if col.building:
                raise ValidationError(f"collection {name!r}: an index build is already running")
            col.building = True
        target_dir = "shard-b" if col.shard_dir != "shard-b" else "shard"
        base = self.root / real
        try:
            with col.write_lock, _edge_errors(real):
                points = col.shard.info().points_count
                copy = edge_index.timed(
                    lambda: edge_index.copy_shard(col.shard, base / col.shard_dir, base / target_dir)
                )
                col.journal, col.schema_ops = set(), []
            build = edge_index.timed(lambda: edge_index.optimize_copy(base / target_dir))
            with _edge_errors(real):
                built = EdgeShard.load(str(base / target_dir), self._load_config())
            started = time.perf_counter()
            with col.write_lock, _edge_errors(real):
                for op in col.schema_ops:
                    built.update(op)
                replayed = edge_index.replay(col.shard, built, col.journal or set())
                old, old_dir = col.shard, col.shard_dir
                col.shard, col.shard_dir = built, target_dir
                with self._guard:
                    self._write_config(real, col)
                col.journal, col.schema_ops = None, []
            switch = time.perf_counter() - started
            with contextlib.suppress(Exception):
                old.close()
            shutil.rmtree(base / old_dir, ignore_errors=True)
            return edge_index.BuildReport(points, copy, build, switch, replayed)
        finally:
            col.journal, col.building = None, False

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
        return [
            Hit(int(p.id), p.score, p.payload or {}, _named(p.vector) if with_vectors else None)
            for p in points
        ]

    def _write(
        self,
        col: _Collection,
        name: str,
        op: UpdateOperation,
        ids: Collection[int],
        schema: bool = False,
    ) -> None:
        """Apply a write to the live shard; during an index build, journal it for the switch."""
        with col.write_lock, _edge_errors(name):
            col.shard.update(op)
            if col.journal is not None:
                col.journal.update(int(i) for i in ids)
                if schema:
                    col.schema_ops.append(op)

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
                shard_dir = str(data.get("shard", "shard"))
                shard = EdgeShard.load(str(self.root / name / shard_dir), self._load_config())
            col = _Collection(
                shard, dict(data.get("vectors", {})), dict(data.get("metadata", {})), shard_dir=shard_dir
            )
            self._open[name] = col
            return col

    def _create(self, name: str, vectors: dict[str, int]) -> None:
        base = self.root / name
        shutil.rmtree(base, ignore_errors=True)  # leftovers of an interrupted creation
        base.mkdir(parents=True)
        with _edge_errors(name):
            params = {n: EdgeVectorParams(size=s, distance=Distance.Cosine) for n, s in vectors.items()}
            optimizers = (
                None
                if self._indexing_threshold_kb is None
                else EdgeOptimizersConfig(indexing_threshold=self._indexing_threshold_kb)
            )
            config = EdgeConfig(
                vectors=params, max_search_threads=self._max_search_threads, optimizers=optimizers
            )
            shard = EdgeShard.create(str(base / "shard"), config)
        col = _Collection(shard, vectors, {})
        self._write_config(name, col)
        self._open[name] = col

    def _load_config(self) -> EdgeConfig | None:
        if self._max_search_threads is None:
            return None  # keep everything as persisted
        return EdgeConfig(max_search_threads=self._max_search_threads)

    def _write_config(self, name: str, col: _Collection) -> None:
        data = {"vectors": col.vectors, "metadata": col.metadata, "shard": col.shard_dir}
        _write_json(self.root / name / "collection.json", data)

    def _save_aliases(self, aliases: dict[str, str]) -> None:
        _write_json(self.root / "aliases.json", aliases)
        self._aliases = aliases  # replaced, never mutated: readers need no lock


def _named(vector: Any) -> dict[str, list[float]] | None:
    """Named vectors as returned by the shard (always a dict: collections only have named vectors)."""
    return dict(vector) if isinstance(vector, dict) else None


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
