"""Self-calibrating search effort: the smallest HNSW ``ef`` whose recall@k against exact search reaches a target.

An HNSW graph answers approximately, and how well depends on the data, the queries and the graph's size: on
random 384-d vectors (no neighbourhood structure) Qdrant's default ef finds ~0.15 of the true top 10 at 100k
points, on clustered ones nearly all of it. No constant fits every catalog, so after an index build (the
embedded store's background build, a Qdrant server's own indexing) the worker measures it, per dense named
vector:

1. ``queries`` probe vectors, as close to the real queries as the stores allow: the vectors of the same name
   stored in ``queries_from`` (the users collection for the items' ``text`` vector: a user's stored vector
   is the query of a text recommendation), and, for the rest, the normalised sum of two stored vectors drawn
   at random (a blend of items, like a user's vector or a collaborative fold-in; harder than a stored point,
   which is linked into the graph at insertion and found easily, and harder than most users: its true
   neighbours lie between clusters, with nearly equal scores);
2. their exact top ``k`` (every point scored, the engine's ``exact`` search);
3. their graph top ``k`` with ef 16, 32, 64, ...: the first ef whose mean recall@k reaches ``target`` is
   chosen. If the graph gets as slow as exact search first (median latencies, measured side by side at each
   step: a small collection, or data without structure), exact search is chosen instead: better answers at
   no higher cost. A graph that loses to exact search is then rebuilt denser (:func:`needs_denser_graph`: m
   and ef_construct doubled, up to m 64) and calibrated again: a denser graph needs a much smaller ef for
   the same recall.

The choice goes into the collection metadata (:data:`nearrec.vectors.payload.META_SEARCH`), which every
adapter applies to the dense queries on that vector. A hit counts as found when it scores at least the exact
k-th score (less a float32 tolerance), so ties and duplicate vectors do not count as misses.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nearrec.vectors.base import Effort, Graph, Hit, VectorStore
from nearrec.vectors.payload import META_SEARCH

MIN_EF = 16
MAX_EF = 1 << 15
MAX_M = 64
"""Densest graph tried (ef_construct 400 with it): each doubling of m doubles the build time and link memory."""
TIE = 1e-5  # float32 rounding of a cosine
EXACT_EVERY = 5


@dataclass(frozen=True, slots=True)
class Step:
    ef: int
    recall: float
    ms: float  # median latency of one graph query


@dataclass(frozen=True, slots=True)
class Calibration:
    """The effort chosen for one named vector and what it was chosen from."""

    vector: str
    effort: Effort
    recall: float  # of the chosen effort (1.0 for exact search)
    exact_ms: float  # median latency of one exact query
    steps: list[Step] = field(default_factory=list)
    probes: str = "blends"  # where the probe vectors came from

    def record(self) -> dict[str, Any]:
        chosen: dict[str, Any] = {"exact": True} if self.effort.exact else {"ef": self.effort.ef}
        tried = [[s.ef, round(s.recall, 4), round(s.ms, 3)] for s in self.steps]
        return {
            **chosen,
            "recall": round(self.recall, 4),
            "exact_ms": round(self.exact_ms, 3),
            "probes": self.probes,
            "tried": tried,
        }


def probes(
    store: VectorStore, name: str, using: str, n: int, seed: int = 0, queries_from: str | None = None
) -> tuple[list[np.ndarray], str]:
    """``n`` probe vectors (step 1 above; fewer when ``name`` holds fewer than 2 points) and where they came
    from: ``queries_from``'s stored vectors, blends of ``name``'s, or both."""
    taken: list[np.ndarray] = []
    if (
        queries_from is not None
        and store.collection_exists(queries_from)
        and store.vector_sizes(queries_from).get(using) == store.vector_sizes(name).get(using)
    ):
        taken = _unit(store.sample(queries_from, using, n), using)
    source = queries_from if queries_from is not None and taken else "blends"
    if len(taken) >= n:
        return taken[:n], source
    vecs = np.asarray(_unit(store.sample(name, using, 2 * (n - len(taken))), using))
    if len(vecs) < 2:
        return taken, source
    rng = np.random.default_rng(seed)
    pairs = rng.permutation(len(vecs))[: 2 * (len(vecs) // 2)].reshape(-1, 2)
    blended = vecs[pairs[:, 0]] + vecs[pairs[:, 1]]
    blended = blended[np.linalg.norm(blended, axis=1) > 1e-6]
    source = f"{source} + blends" if taken else source
    return taken + [v / np.linalg.norm(v) for v in blended[: n - len(taken)]], source


def _unit(hits: Sequence[Hit], using: str) -> list[np.ndarray]:
    vecs = [np.asarray(h.vector[using], dtype=np.float64) for h in hits if h.vector and using in h.vector]
    return [v / norm for v in vecs if (norm := np.linalg.norm(v)) > 0]


def calibrate_vector(
    store: VectorStore,
    name: str,
    using: str,
    target: float,
    queries: int = 100,
    k: int = 10,
    queries_from: str | None = None,
) -> Calibration | None:
    """Steps 1-3 above for the dense vector ``using``; None when the collection is too small to measure."""
    vectors, source = probes(store, name, using, queries, queries_from=queries_from)
    if not vectors:
        return None
    points = store.count(name)

    def timed(v: np.ndarray, effort: Effort) -> tuple[list[Hit], float]:
        started = time.perf_counter()
        hits = store.query(name, v, using, k, search=effort)
        return hits, (time.perf_counter() - started) * 1000

    truth = [timed(v, Effort(exact=True))[0] for v in vectors]
    for v in vectors:
        timed(v, Effort(ef=MIN_EF))  # untimed: the first graph queries page its links in
    steps: list[Step] = []
    exact_times: list[float] = []
    ef = MIN_EF
    while ef <= MAX_EF:
        # graph and exact latencies measured side by side (every EXACT_EVERY-th probe), so a change of the
        # machine's load between steps does not decide between them
        got, ms, exact_ms = [], [], []
        for n, v in enumerate(vectors):
            hits, took = timed(v, Effort(ef=ef))
            got.append(hits)
            ms.append(took)
            if n % EXACT_EVERY == 0:
                exact_ms.append(timed(v, Effort(exact=True))[1])
        exact_times += exact_ms
        steps.append(Step(ef, recall(got, truth, k), float(np.median(ms))))
        if steps[-1].recall >= target:
            exact_median = float(np.median(exact_times))
            return Calibration(using, Effort(ef=ef), steps[-1].recall, exact_median, steps, source)
        if steps[-1].ms >= float(np.median(exact_ms)) or ef >= points:
            break
        ef *= 2
    return Calibration(using, Effort(exact=True), 1.0, float(np.median(exact_times)), steps, source)


def recall(got: Sequence[Sequence[Hit]], truth: Sequence[Sequence[Hit]], k: int) -> float:
    """Mean recall@k of ``got`` against the exact answers ``truth`` (a hit scoring at least the exact k-th
    score counts as found)."""
    found = total = 0
    for answer, exact in zip(got, truth, strict=True):
        if not exact:
            continue
        floor = exact[min(k, len(exact)) - 1].score - TIE
        found += min(sum(1 for h in answer[:k] if h.score >= floor), len(exact))
        total += min(k, len(exact))
    return found / total if total else 1.0


def calibrate(
    store: VectorStore,
    name: str,
    target: float,
    queries: int = 100,
    on_vector: Callable[[Calibration], None] | None = None,
    queries_from: str | None = None,
) -> dict[str, Any]:
    """Calibrate every dense named vector of ``name`` (probes from ``queries_from`` where it holds vectors of
    that name, see :func:`probes`) and record the choices in its metadata; returns the record (see
    :data:`META_SEARCH`)."""
    started = time.perf_counter()
    indexed, graph = store.indexed_vectors(name), store.graph(name)
    chosen: dict[str, Any] = {}
    for using in sorted(store.vector_sizes(name)):
        result = calibrate_vector(store, name, using, target, queries, queries_from=queries_from)
        if result is not None:
            chosen[using] = result.record()
            if on_vector is not None:
                on_vector(result)
    record = {
        "indexed": indexed or 0,
        "graph": [graph.m, graph.ef_construct],
        "target": target,
        "vectors": chosen,
        "seconds": round(time.perf_counter() - started, 2),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    store.set_metadata(name, {META_SEARCH: record})
    return record


def needs_denser_graph(record: dict[str, Any], graph: Graph) -> Graph | None:
    """The parameters of a denser graph when the calibration found a vector whose graph cannot reach the
    target recall before it costs as much as exact search (up to m :data:`MAX_M`); None otherwise."""
    if graph.m >= MAX_M or not any(v.get("exact") for v in record.get("vectors", {}).values()):
        return None
    return graph.denser()


def calibration_due(store: VectorStore, name: str, target: float, min_points: int) -> bool:
    """True when ``name``'s graph changed since its last calibration: it was never calibrated (or for another
    target) and has a graph, or the graph was rebuilt with other parameters, or it grew or shrank by half, or
    by ``min_points`` vectors if positive."""
    indexed = store.indexed_vectors(name)
    if not indexed:
        return False
    record = store.get_metadata(name).get(META_SEARCH)
    if not isinstance(record, dict) or record.get("target") != target:
        return True
    graph = store.graph(name)
    if record.get("graph", [16, 100]) != [graph.m, graph.ef_construct]:
        return True
    before = int(record.get("indexed") or 0)
    half = max(before // 2, 1)
    return abs(indexed - before) >= (min(min_points, half) if min_points > 0 else half)


__all__ = [
    "Calibration",
    "Step",
    "calibrate",
    "calibrate_vector",
    "calibration_due",
    "needs_denser_graph",
    "probes",
    "recall",
]
