"""Helpers of the embedded vector store (:mod:`nearrec.vectors.edge`): the open collection, the directory lock
and JSON files, name checks and the translation of engine errors (requests: :mod:`nearrec.vectors.edge_requests`)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qdrant_edge import (
    Distance,
    EdgeConfig,
    EdgeOptimizersConfig,
    EdgeShard,
    EdgeSparseVectorParams,
    EdgeVectorParams,
    ScrollRequest,
    SearchParams,
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
from nearrec.filters import FieldType, FilterExpr
from nearrec.vectors.base import (
    SPARSE_FULL_SCAN_THRESHOLD,
    UPSERT_CHUNK,
    Graph,
    Hit,
    check_names,
    stored_efforts,
)
from nearrec.vectors.edge_requests import edge_hit, search_params
from nearrec.vectors.filters_edge import to_edge_filter

_NAME = re.compile(r"[A-Za-z0-9_\-]{1,200}")
INDEX_TYPES = {
    FieldType.KEYWORD: EdgeSchema.Keyword,
    FieldType.INTEGER: EdgeSchema.Integer,
    FieldType.FLOAT: EdgeSchema.Float,
    FieldType.BOOL: EdgeSchema.Integer,  # booleans are stored as 0 / 1
}
_BAD_INPUT = ("dimension error", "not existing vector", "wrong input", "bad input", "bad request")


@dataclass
class EdgeCollection:
    """An open collection: its shard and what ``collection.json`` records."""

    shard: EdgeShard
    vectors: dict[str, int]
    metadata: dict[str, Any]
    sparse: set[str]
    shard_dir: str = "shard"
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    journal: set[int] | None = None  # ids written while an index build runs (see edge_index)
    schema_ops: list[UpdateOperation] = field(default_factory=list)  # index / vector changes meanwhile
    building: bool = False
    efforts: dict[str, SearchParams] = field(default_factory=dict)  # per named vector, from the metadata
    graph: Graph = field(default_factory=Graph)  # the HNSW parameters the shard was built with

    def __post_init__(self) -> None:
        self.set_metadata(self.metadata)

    def set_metadata(self, metadata: dict[str, Any]) -> None:
        """Replace the metadata and the search effort per vector it records (replaced, never mutated:
        queries read ``efforts`` without a lock)."""
        self.metadata = metadata
        self.efforts = {k: search_params(e) for k, e in stored_efforts(metadata).items()}

    @classmethod
    def load(cls, base: Path, name: str, config: EdgeConfig | None) -> EdgeCollection:
        """Open the collection stored under ``base`` (its ``collection.json`` and shard directory)."""
        data = read_json(base / "collection.json", {})
        shard_dir = str(data.get("shard", "shard"))
        with edge_errors(name):
            shard = EdgeShard.load(str(base / shard_dir), config)
        vectors, metadata = dict(data.get("vectors", {})), dict(data.get("metadata", {}))
        graph = Graph(*data["graph"]) if "graph" in data else Graph()
        return cls(shard, vectors, metadata, set(data.get("sparse", [])), shard_dir=shard_dir, graph=graph)

    @classmethod
    def create(
        cls,
        base: Path,
        name: str,
        vectors: dict[str, int],
        sparse: set[str],
        threads: int | None,
        indexing_threshold_kb: int | None,
    ) -> EdgeCollection:
        """A new, empty collection under ``base``; it exists once its ``collection.json`` is written."""
        shutil.rmtree(base, ignore_errors=True)  # leftovers of an interrupted creation
        base.mkdir(parents=True)
        with edge_errors(name):
            shard = new_shard(base / "shard", vectors, sparse, threads, indexing_threshold_kb)
        col = cls(shard, vectors, {}, sparse)
        col.save(base)
        return col

    def save(self, base: Path) -> None:
        """Write ``collection.json``: what the collection holds, its metadata and its live shard directory."""
        data = {"vectors": self.vectors, "sparse": sorted(self.sparse), "metadata": self.metadata}
        graph = [self.graph.m, self.graph.ef_construct]
        write_json(base / "collection.json", {**data, "shard": self.shard_dir, "graph": graph})

    def unindexed(self, name: str) -> int:
        """Dense vectors not yet in an HNSW graph."""
        with edge_errors(name):
            info = self.shard.info()
        return max(0, info.points_count * len(self.vectors) - info.indexed_vectors_count)

    def drop_vector(self, name: str, vector: str) -> bool:
        """Drop the named vector from the shard and the config; False if the collection has no such vector."""
        if vector not in self.vectors and vector not in self.sparse:
            return False
        self.write(name, UpdateOperation.delete_vector_name(vector), (), schema=True)
        self.vectors.pop(vector, None)
        self.sparse.discard(vector)
        return True

    def scroll(self, name: str, batch: int, with_vectors: bool, filter: FilterExpr | None) -> Iterator[Hit]:
        """Every point (matching ``filter``) in id order, ``batch`` at a time."""
        edge_filter = to_edge_filter(filter)
        offset: Any = None
        while True:
            request = ScrollRequest(
                offset=offset, limit=batch, filter=edge_filter, with_payload=True, with_vector=with_vectors
            )
            with edge_errors(name):
                records, offset = self.shard.scroll(request)
            for r in records:
                yield edge_hit(r, 0.0, with_vectors)
            if offset is None:
                return

    def clear_vector(self, name: str, vector: str, ids: Sequence[int]) -> None:
        """Remove ``vector``'s values from the points ``ids`` (the named vector and its config stay)."""
        if vector not in self.vectors and vector not in self.sparse:
            return
        for start in range(0, len(ids), UPSERT_CHUNK):
            chunk: list[Any] = list(ids[start : start + UPSERT_CHUNK])
            self.write(name, UpdateOperation.delete_vectors(chunk, [vector]), chunk)

    def write(self, name: str, op: UpdateOperation, ids: Collection[int], schema: bool = False) -> None:
        """Apply a write to the live shard; during an index build, journal it for the switch."""
        with self.write_lock, edge_errors(name):
            self.shard.update(op)
            if self.journal is not None:
                self.journal.update(int(i) for i in ids)
                if schema:
                    self.schema_ops.append(op)


def check_collection_args(name: str, vectors: Mapping[str, int], sparse: Collection[str]) -> None:
    check_name(name)
    check_names(vectors, sparse)
    for vname, size in vectors.items():
        check_name(vname)
        if size < 1:
            raise ValidationError(f"vector {vname!r}: size must be positive, got {size}", path="vectors")
    for vname in sparse:
        check_name(vname)


def new_shard(
    path: Path,
    vectors: Mapping[str, int],
    sparse: Collection[str],
    threads: int | None,
    indexing_threshold_kb: int | None = None,
) -> EdgeShard:
    params = {n: EdgeVectorParams(size=s, distance=Distance.Cosine) for n, s in vectors.items()}
    sparse_params = {
        n: EdgeSparseVectorParams(full_scan_threshold=SPARSE_FULL_SCAN_THRESHOLD) for n in sorted(sparse)
    } or None
    optimizers = (
        None
        if indexing_threshold_kb is None
        else EdgeOptimizersConfig(indexing_threshold=indexing_threshold_kb)
    )
    config = EdgeConfig(
        vectors=params or None,
        sparse_vectors=sparse_params,
        max_search_threads=threads,
        optimizers=optimizers,
    )
    return EdgeShard.create(str(path), config)


def load_config(threads: int | None) -> EdgeConfig | None:
    """The config to load a shard with: None keeps everything as persisted."""
    return None if threads is None else EdgeConfig(max_search_threads=threads)


def add_named_vectors(
    name: str, col: EdgeCollection, vectors: Mapping[str, int], sparse: Collection[str]
) -> bool:
    """Add the named vectors ``col`` lacks (a size mismatch is an error); True when one was added."""
    added = False
    for vname, size in vectors.items():
        have = col.vectors.get(vname)
        if have is None:
            col.write(
                name, UpdateOperation.create_dense_vector(vname, size, Distance.Cosine), (), schema=True
            )
            col.vectors[vname] = size
            added = True
        elif have != size:
            raise ModelMismatchError(
                f"collection {name!r}: vector {vname!r} has {have} dimensions, {size} were asked; "
                "run `nearrec reindex`"
            )
    for vname in sparse:
        if vname in col.vectors:
            raise ModelMismatchError(f"collection {name!r}: vector {vname!r} is dense, not sparse")
        if vname not in col.sparse:
            col.write(name, UpdateOperation.create_sparse_vector(vname), (), schema=True)
            col.sparse.add(vname)
            added = True
    return added


def valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValidationError(f"invalid name {name!r} (letters, digits, '_' and '-')", path="name")


def acquire_lock(root: Path) -> int:
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


def read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:
        raise StoreUnavailableError(f"cannot read {path}: {exc}") from exc


def write_json(path: Path, data: Any) -> None:
    """Write atomically: temp file, fsync, os.replace."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def edge_errors(name: str) -> Iterator[None]:
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


__all__ = [
    "INDEX_TYPES",
    "EdgeCollection",
    "add_named_vectors",
    "check_collection_args",
    "new_shard",
    "acquire_lock",
    "check_name",
    "edge_errors",
    "load_config",
    "read_json",
    "valid_name",
    "write_json",
]
