"""Background HNSW builds of the embedded store, started by the worker once a bulk load is synced.

The embedded store searches new points exactly until their segment is optimized; past a few hundred
thousand points that costs milliseconds per query. When the worker goes idle (the backlog is drained) and
at least ``index_build_min_points`` vectors of a collection are outside the HNSW graph, it starts a build in
a background thread (:meth:`nearrec.vectors.edge.EdgeVectorStore.build_index`: the build itself runs in a
child process, so queries and writes go on). A Qdrant server indexes on its own: nothing to do there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from nearrec.vectors.base import VectorStore

log = logging.getLogger(__name__)


class IndexBuilder:
    """Starts at most one background build at a time; a collection is built again only once it holds
    ``min_points`` more unindexed vectors than right after its last build."""

    def __init__(self, store: VectorStore, collections: Sequence[str], min_points: int) -> None:
        self.store = store
        self.collections = list(collections)
        self.min_points = min_points
        self._baseline: dict[str, int] = {}
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def maybe_start(self) -> str | None:
        """Start a build if one is due; returns the collection being built (None: nothing to do)."""
        unindexed = getattr(self.store, "unindexed_points", None)
        if self.min_points <= 0 or unindexed is None or self.running:
            return None
        for name in self.collections:
            if not self.store.collection_exists(name):
                continue
            if unindexed(name) - self._baseline.get(name, 0) >= self.min_points:
                self._thread = threading.Thread(
                    target=self._build, args=(name,), name="nearrec-index", daemon=True
                )
                self._thread.start()
                return name
        return None

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _build(self, name: str) -> None:
        try:
            report = self.store.build_index(name)  # type: ignore[attr-defined]
            log.info(
                "index of %s built: %d points, build %.1fs, writes blocked %.2fs (copy) + %.2fs (switch, "
                "%d replayed)",
                name,
                report.points,
                report.build_seconds,
                report.copy_seconds,
                report.switch_seconds,
                report.replayed,
            )
        except Exception as exc:  # the collection stays searchable exactly; the next idle period retries
            log.error("index build of %s failed: %s", name, exc)
        finally:
            self._baseline[name] = self.store.unindexed_points(name)  # type: ignore[attr-defined]
