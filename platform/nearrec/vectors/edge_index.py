"""Building the HNSW index of an embedded (qdrant-edge) collection without stopping the process.

``EdgeShard.optimize()`` holds the GIL for the whole build (measured with qdrant-edge-py 0.9: a pure-Python
thread gets ~0.2% of its usual time, and queries and writes of other threads wait for the end, ~1 min per
100k points). So the build runs in ANOTHER process, on a copy:

1. under the collection's write lock: flush the live shard, copy its directory, start a journal of the ids
   written from now on (writes wait for the copy only; queries never wait);
2. a child process (``python -m nearrec.vectors.edge_index DIR [GRAPH]``) loads the copy and optimizes it
   (with new HNSW parameters ``GRAPH``, the whole graph is rebuilt with them); this process keeps answering
   queries and writes on the live shard meanwhile;
3. under the write lock again: load the built shard, replay the journal (each written id is copied from the
   live shard with its vectors and payload, or deleted), switch the collection to the built shard (recorded
   in ``collection.json``) and remove the old directory.

Queries see the old shard until the switch and the built one after it, with the same points, filters and
payload indexes (they are part of the shard), so answers stay exact-or-better and never lose a write.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qdrant_edge import (
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeVectorParams,
    HnswIndexConfig,
    Point,
    UpdateOperation,
)

from nearrec.errors import StoreUnavailableError
from nearrec.vectors.base import Graph

FULL_SCAN_KB = 10_000
"""Qdrant's default HNSW full-scan threshold (KB of vectors): a segment or a filter under it is scanned."""

if TYPE_CHECKING:
    from nearrec.vectors.edge_support import EdgeCollection


@dataclass(frozen=True, slots=True)
class BuildReport:
    """Seconds spent: writes blocked while copying, the child's build, writes blocked while switching."""

    points: int
    copy_seconds: float
    build_seconds: float
    switch_seconds: float
    replayed: int


def build(
    col: EdgeCollection,
    base: Path,
    name: str,
    load_config: EdgeConfig | None,
    switched: Callable[[str, EdgeCollection], None],
    graph: Graph | None = None,
) -> BuildReport:
    """Steps 1-3 above for the open collection ``col`` stored under ``base``; ``switched`` records the new
    shard directory (and ``graph``, the parameters of a rebuilt graph) once queries use it."""
    from nearrec.vectors.edge_support import edge_errors

    target_dir = "shard-b" if col.shard_dir != "shard-b" else "shard"
    with col.write_lock, edge_errors(name):
        points = col.shard.info().points_count
        copy = timed(lambda: copy_shard(col.shard, base / col.shard_dir, base / target_dir))
        col.journal, col.schema_ops = set(), []
    rebuild = None if graph is None else {"vectors": col.vectors, "m": graph.m, "ef": graph.ef_construct}
    built_in = timed(lambda: optimize_copy(base / target_dir, rebuild=rebuild))
    with edge_errors(name):
        built = EdgeShard.load(str(base / target_dir), load_config)
    started = time.perf_counter()
    with col.write_lock, edge_errors(name):
        for op in col.schema_ops:
            built.update(op)
        replayed = replay(col.shard, built, col.journal or set())
        old, old_dir = col.shard, col.shard_dir
        col.shard, col.shard_dir = built, target_dir
        col.graph = graph or col.graph
        switched(name, col)
        col.journal, col.schema_ops = None, []
    switch = time.perf_counter() - started
    with contextlib.suppress(Exception):
        old.close()
    shutil.rmtree(base / old_dir, ignore_errors=True)
    return BuildReport(points, copy, built_in, switch, replayed)


def optimize_copy(
    directory: Path, timeout: float | None = None, rebuild: dict[str, Any] | None = None
) -> None:
    """Optimize the (closed) shard at ``directory`` in a child process; ``rebuild``: its dense vectors and
    new HNSW parameters (``{"vectors": {name: size}, "m": m, "ef": ef_construct}``), the graph rebuilt."""
    extra = [] if rebuild is None else [json.dumps(rebuild)]
    proc = subprocess.run(
        [sys.executable, "-m", "nearrec.vectors.edge_index", str(directory), *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise StoreUnavailableError(f"building the index of {directory} failed: {proc.stderr.strip()[-500:]}")


def copy_shard(live: EdgeShard, source: Path, target: Path) -> None:
    live.flush()
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)


def replay(live: EdgeShard, built: EdgeShard, ids: set[int]) -> int:
    """Make ``built`` hold what ``live`` holds for ``ids`` (points written during the build)."""
    if not ids:
        return 0
    wanted = sorted(ids)
    for start in range(0, len(wanted), 256):
        chunk: list[Any] = wanted[start : start + 256]
        records = live.retrieve(chunk, with_payload=True, with_vector=True)
        present = {int(r.id) for r in records}
        points = [Point(int(r.id), _vectors(r.vector), r.payload or {}) for r in records]
        if points:
            built.update(UpdateOperation.upsert_points(points))
        gone = [i for i in chunk if i not in present]
        if gone:
            built.update(UpdateOperation.delete_points(gone))
    return len(wanted)


def _vectors(vector: Any) -> Any:
    return dict(vector) if isinstance(vector, dict) else vector


def timed(step: Callable[[], Any]) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def rebuild_config(rebuild: dict[str, Any]) -> EdgeConfig:
    """The config that makes ``optimize()`` rebuild a shard's graph with new parameters (persisted with it:
    later builds use them too); the shard's sparse vectors and payload indexes are kept as they are."""
    vectors = {n: EdgeVectorParams(size=s, distance=Distance.Cosine) for n, s in rebuild["vectors"].items()}
    hnsw = HnswIndexConfig(m=rebuild["m"], ef_construct=rebuild["ef"], full_scan_threshold=FULL_SCAN_KB)
    return EdgeConfig(vectors=vectors, hnsw_config=hnsw)


def main(argv: list[str]) -> int:
    """Child process: optimize the shard directory ``argv[0]`` (builds its HNSW index; with ``argv[1]``, the
    JSON of :func:`optimize_copy`'s ``rebuild``, rebuilds it with new parameters), then exit."""
    shard = EdgeShard.load(argv[0], rebuild_config(json.loads(argv[1])) if len(argv) > 1 else None)
    try:
        shard.optimize()
        shard.flush()
    finally:
        shard.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
