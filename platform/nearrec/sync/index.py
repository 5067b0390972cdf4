"""Background HNSW builds of the embedded store and search-effort calibrations, started by the idle worker.

The embedded store searches new points exactly until their segment is optimized; past a few hundred
thousand points that costs milliseconds per query. When the worker goes idle (the backlog is drained) and
at least ``index_build_min_points`` vectors of a collection are outside the HNSW graph, it starts a build in
a background thread (:meth:`nearrec.vectors.edge.EdgeVectorStore.build_index`: the build itself runs in a
child process, so queries and writes go on). A Qdrant server indexes on its own.

Right after a build, and whenever an idle worker finds a graph that changed since its last calibration (a
Qdrant server's own indexing), the search effort is calibrated (:mod:`nearrec.vectors.calibrate`): the
smallest HNSW ef reaching ``target_recall`` against exact search, recorded in the collection metadata and
used by every query on it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence

from nearrec.vectors.base import VectorStore
from nearrec.vectors.calibrate import Calibration, calibrate, calibration_due, needs_denser_graph

log = logging.getLogger(__name__)


class IndexBuilder:
    """Starts at most one background build at a time; a collection is built again only once it holds
    ``min_points`` more unindexed vectors than right after its last build."""

    def __init__(
        self,
        store: VectorStore,
        collections: Sequence[str],
        min_points: int,
        target_recall: float = 0.95,
        queries_from: Mapping[str, str] | None = None,
    ) -> None:
        """``queries_from``: collection -> the collection whose stored vectors are the queries made against
        it (the items' -> the users': a user's vector is a recommendation's query), the calibration's probes."""
        self.store = store
        self.collections = list(collections)
        self.min_points = min_points
        self.target_recall = target_recall
        self.queries_from = dict(queries_from or {})
        self._baseline: dict[str, int] = {}
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def maybe_start(self) -> str | None:
        """Start a build (then a calibration) or a calibration alone if one is due; returns the collection
        being worked on (None: nothing to do)."""
        unindexed = getattr(self.store, "unindexed_points", None) if self.min_points > 0 else None
        if self.running:
            return None
        for name in self.collections:
            if not self.store.collection_exists(name):
                continue
            if unindexed is not None and unindexed(name) - self._baseline.get(name, 0) >= self.min_points:
                return self._start(self._build, name)
            if self.target_recall > 0 and calibration_due(
                self.store, name, self.target_recall, self.min_points
            ):
                return self._start(self._calibrate, name)
        return None

    def _start(self, work: Callable[[str], None], name: str) -> str:
        self._thread = threading.Thread(target=work, args=(name,), name="nearrec-index", daemon=True)
        self._thread.start()
        return name

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
            return
        finally:
            self._baseline[name] = self.store.unindexed_points(name)  # type: ignore[attr-defined]
        self._calibrate(name)

    def _calibrate(self, name: str) -> None:
        """Calibrate; when the graph loses to exact search, rebuild it denser and calibrate again."""
        try:
            record = calibrate(
                self.store,
                name,
                self.target_recall,
                on_vector=_log_choice(name),
                queries_from=self.queries_from.get(name),
            )
            log.info("search effort of %s calibrated in %.1fs", name, record["seconds"])
            denser = needs_denser_graph(record, self.store.graph(name))
            if denser is None:
                return
            log.info(
                "the HNSW graph of %s cannot beat exact search at recall %.2f: rebuilding it with m %d, "
                "ef_construct %d", name, self.target_recall, denser.m, denser.ef_construct,
            )  # fmt: skip
            self.store.rebuild_graph(name, denser)
        except Exception as exc:  # queries keep the previous effort; the next idle period retries
            log.error("search effort calibration of %s failed: %s", name, exc)
            return
        finally:
            if hasattr(self.store, "unindexed_points"):
                self._baseline[name] = self.store.unindexed_points(name)
        if calibration_due(self.store, name, self.target_recall, self.min_points):
            self._calibrate(name)  # the embedded store rebuilt it (a server: a later idle period)


def _log_choice(name: str) -> Callable[[Calibration], None]:
    def chosen(c: Calibration) -> None:
        effort = "exact search" if c.effort.exact else f"hnsw_ef {c.effort.ef}"
        tried = ", ".join(f"ef {s.ef}: {s.recall:.3f} in {s.ms:.2f} ms" for s in c.steps)
        log.info(
            "search effort of %s/%s: %s (recall@10 %.3f on %s; exact %.2f ms; %s)",
            name, c.vector, effort, c.recall, c.probes, c.exact_ms, tried,
        )  # fmt: skip

    return chosen
