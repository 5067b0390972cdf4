"""Query latency at scale: every recommendation method in-process and over HTTP, against the raw store query.

    .venv/bin/python bench/query.py [--items 100000] [--users 10000] [--queries 1000] [--train-budget 60]
                                    [--lock /work/bench.lock] [--out results.json] [--baseline results-100k.json]

``--lock`` takes the machine's benchmark lock for the timed queries only (queries, HTTP), after the data
generation, the training and the index build (45-80 min at 1M items: too long to hold the lock; its time is
printed with the load average around it); ``--no-tune`` trains the untuned ridge model instead (quick runs).
``--vectors clustered`` draws the vectors around 1,000 centres (closer to real embeddings) instead of random.

Builds, in a scratch Postgres database (NEARREC_DATABASE_URL's server, else 127.0.0.1:5432, else an embedded
Postgres) and an embedded vector store: a catalog of ``--items`` random 384-d item vectors (20 categories),
``--users`` users with 20-2,000 seen items (log-uniform) plus ``--probes`` users of each history size 20, 200,
2,000 and 5,000, their interactions (views, clicks, purchases). Then, as a deployment would:

1. trains the collaborative model on those interactions (the library's train job, ``--train-budget`` seconds
   of tuning: what `nearrec train --budget` runs), so ``hybrid`` becomes the default method, then drains the
   user refreshes the training enqueued with the sync worker (it stores each user's cf fold-in in Postgres;
   the users' text vectors are recorded as current, so it keeps them);
2. builds the HNSW index through the worker's background build (:class:`nearrec.sync.index.IndexBuilder`: a
   child process optimizes a copy of the shard, then the store switches to it) and calibrates the search
   effort (:mod:`nearrec.vectors.calibrate`: the smallest hnsw_ef reaching NEARREC_TARGET_RECALL), timed;
   prints the ef chosen per vector and the recall / latency of each ef tried.

And measures, in the SAME run, with a category filter on every query:

- raw: the store call of each method with the arguments the retriever passes (filter + active flag, the
  user's most recent seen ids as the ``must_not has_id`` exclusion, the first page): ``text`` and ``cf``
  VectorStore.query, ``hybrid`` VectorStore.query_fused, ``popular`` the popular list (its store reads and payload filter, the counts cached);
- recall@10 of the raw text query against exact numpy search on the same vectors, same filter, same
  exclusion: under the query's category filter (5%: exact below the engine's full-scan threshold, through the
  graph at 1M), under the in-stock flag (80%: through the graph, filtered) and with the active flag only;
- in-process: QueryService.recommend with each method (text, cf, hybrid, popular), its p50 and ratio to raw
  (target <= 1.5x), and p50 by seen-history size (20, 200, 2,000, 5,000); beside it the least Postgres read
  any recommendation needs (user, seen ids, pending ids) and the floor (raw + that read) / raw: the best
  ratio a method whose store query needs that read first can reach;
- HTTP: `nearrec serve` in its own process, 8 keep-alive clients with the default method: saturation (closed
  loop), then an open loop at half that rate, p50 / p99 against the in-process p50 (targets <= 1.5x and
  <= 3x), saturation rate against 1000 / in-process p50 in ms (target >= 1), the server's RSS; and the
  in-process path's own saturation (8 threads, the same mix, no HTTP) with HTTP saturation / in-process
  saturation: what HTTP itself costs in throughput (>= 0.85 at 100k proposed, docs/sizing.md; the issue's
  target is the ratio to 1000 / in-process p50 above).

At 1M items the targets are recall@10 >= 0.95 and p50 < 3x the 100k p50: ``--baseline`` reads the ``--out``
file of a 100k run and prints those ratios.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from pydantic import SecretStr  # noqa: E402

from nearrec.config import Settings  # noqa: E402
from nearrec.filters import And, Eq, FilterExpr  # noqa: E402
from nearrec.model.user_vector import UserVectorParams  # noqa: E402
from nearrec.postgres import migrate  # noqa: E402
from nearrec.postgres import query_repo as repo  # noqa: E402
from nearrec.postgres.engine import make_engine, read_connection, read_sessions, session_factory  # noqa: E402
from nearrec.query.collaborative import CF_HISTORY, cf_user_vector  # noqa: E402
from nearrec.query.retrieval import ACTIVE, TEXT  # noqa: E402
from nearrec.query.service import QueryService  # noqa: E402
from nearrec.vectors.base import VectorStore  # noqa: E402
from query_data import (  # noqa: E402
    CATEGORIES,
    MODEL,
    VECTOR_KINDS,
    Catalog,
    database_cpu,
    fill_postgres,
    fill_store,
    pct,
    refresh_users,
    scratch_database,
)
from query_http import CpuCost, http_figures, inprocess_saturation  # noqa: E402

METHODS = ("text", "cf", "hybrid", "popular")
HTTP_SATURATION_TARGET = 0.85
K = 10
Query = tuple[int, int]  # (user index, category index)


class Floor:
    """The store call each method makes for a query, with the arguments the retriever passes (k=10)."""

    def __init__(
        self, service: QueryService, store: VectorStore, settings: Settings, catalog: Catalog
    ) -> None:
        self.service, self.store, self.settings, self.catalog = service, store, settings, catalog
        self.items = settings.items_collection
        self.meta = service.cf_meta()
        self.text: dict[int, Any] = {}
        self.cf: dict[int, Any] = {}
        self.session = service.sessions()  # fills the popular list's counts once, then unused
        service.popular.hits(self.session, None, (), K)

    def prepare(self, users: set[int]) -> None:
        """The text and cf vectors of ``users`` (computed before timing: the raw floor is the store call)."""
        todo = sorted(users - set(self.text))
        for hit in self.store.retrieve(
            self.settings.users_collection, [u + 1 for u in todo], with_vectors=True
        ):
            if hit.vector:
                self.text[hit.id - 1] = np.asarray(hit.vector[TEXT], dtype=np.float32)
        if self.meta is None:
            return
        params = UserVectorParams.from_settings(self.settings)
        tag, stored = self.service.cf_tag(self.meta), 0
        with self.service.sessions() as session:
            for u in todo:
                found = repo.user_with_history(session, self.catalog.user_name(u), None, CF_HISTORY)
                assert found is not None
                self.cf[u] = cf_user_vector(self.service.retriever, found[2], self.meta, params)
                read = repo.user_request(session, self.catalog.user_name(u), None, CF_HISTORY, cf_tag=tag)
                stored += read is not None and read.folded
        print(f"the one read returns the stored cf fold-in for {stored} of {len(todo)} queried users")

    def database(self, method: str, u: int, hit_ids: list[int]) -> Callable[[], object]:
        """The Postgres read a recommendation needs, whatever the code around it, on a pooled connection as
        the service makes it: the user with their seen ids (and, for the model's methods, their stored cf
        fold-in, or their recent history when it is not usable) and the pending item ids, in one statement
        (the answer comes from the hits' payload)."""
        model = method in ("cf", "hybrid") and self.meta is not None
        history = CF_HISTORY if model else 0
        tag = self.service.cf_tag(self.meta) if model and self.meta is not None else None
        sessions, name, types = self.service.sessions, self.catalog.user_name(u), self.settings.seen_types
        pending = self.settings.seen_filter_limit + 1

        def reads() -> None:
            with read_connection(sessions) as connection:
                repo.user_request(connection, name, types, history, pending=pending, cf_tag=tag)

        return reads

    def seen_read(self, u: int) -> Callable[[], object]:
        """The least Postgres read any recommendation needs (the floor of every method): the user, their seen
        ids and the pending item ids, without the recent events the model's methods fold in: ``text``'s."""
        return self.database("text", u, [])

    def split(self, u: int) -> tuple[list[int], int]:
        limit = self.settings.seen_filter_limit
        seen = self.catalog.seen[u]
        return seen[:limit], max(0, len(seen) - limit)

    def call(self, method: str, u: int, cat: int) -> Callable[[], object]:
        flt: FilterExpr = And((ACTIVE, Eq("category", CATEGORIES[cat])))
        pushed, rest = self.split(u)
        store, items = self.store, self.items
        if method == "text" or (method == "cf" and self.meta is not None):
            vector = self.text[u] if method == "text" else self.cf[u]
            using = TEXT if method == "text" else self.meta.vector  # type: ignore[union-attr]
            page = K + min(rest, 4 * K)
            return lambda: store.query(items, vector, using, page, filter=flt, exclude_ids=pushed)
        if method == "hybrid" and self.meta is not None and self.meta.text_weight <= 0:
            return self.call("cf", u, cat)  # the tuner chose no text: hybrid is the model's list
        if method == "hybrid" and self.meta is not None:
            meta = self.meta
            queries = [(self.cf[u], meta.vector, 1.0), (self.text[u], TEXT, meta.text_weight)]
            prefetch = max(meta.candidates, K + rest)
            return lambda: store.query_fused(
                items,
                queries,
                limit=K + rest,
                filter=flt,
                exclude_ids=pushed,
                prefetch_limit=prefetch,
                method="rrf",
                with_payload=not rest,  # as the retriever: ids only when it drops hits after the fact
            )
        banned, popular, expr = (
            set(self.catalog.seen[u]),
            self.service.popular,
            Eq("category", CATEGORIES[cat]),
        )
        return lambda: popular.hits(self.session, expr, banned, K)  # its counts are cached: store reads only


def timed(call: Callable[[], object]) -> float:
    t = time.perf_counter()
    call()
    return (time.perf_counter() - t) * 1000


def compare(
    floor: Floor, method: str, queries: list[Query], seen: list[float] | None = None
) -> tuple[list[float], list[float], list[float]]:
    """Raw, database and in-process latencies (ms) of ``method`` on ``queries``, interleaved (same load,
    same cache); ``seen`` collects the seen-ids read alone (:meth:`Floor.seen_read`) too."""
    service, catalog = floor.service, floor.catalog
    raw, database, inproc = [], [], []
    for n, (u, cat) in enumerate(queries):
        t = time.perf_counter()
        hits = floor.call(method, u, cat)()
        raw.append((time.perf_counter() - t) * 1000)
        database.append(timed(floor.database(method, u, [h.id for h in hits][:K])))  # type: ignore[attr-defined]
        if seen is not None:
            seen.append(timed(floor.seen_read(u)))
        t = time.perf_counter()
        recs = service.recommend(
            catalog.user_name(u), k=K, filter={"category": CATEGORIES[cat]}, method=method
        )
        inproc.append((time.perf_counter() - t) * 1000)
        if n == 0 and len(recs) != K:
            raise RuntimeError(f"{method}: {len(recs)} recommendations, expected {K}")
        if set(catalog.seen[u]) & {int(r.item_id.split("-")[1]) + 1 for r in recs}:
            raise RuntimeError(f"{method}: a seen item was recommended to user {u}")
    return raw, database, inproc


RECALL_FILTERS = {
    "category": "the query's category filter (5% of the catalog: exact below ~6,500 matching points)",
    "in_stock": "the in-stock flag (80% of the catalog: through the HNSW graph, filtered)",
    "unfiltered": "the active flag only (through the HNSW graph)",
}


def recall(floor: Floor, queries: list[Query], mode: str = "category") -> float:
    """Mean recall@10 of the raw text query against exact search, same filter and exclusion, under one of
    :data:`RECALL_FILTERS`. The engine's planner searches a filter matching fewer points than its full-scan
    threshold exactly, whatever the index; larger ones go through the graph."""
    found = 0
    catalog = floor.catalog
    for u, cat in queries:
        pushed, _ = floor.split(u)
        if mode == "category":
            got = [h.id for h in floor.call("text", u, cat)()][:K]  # type: ignore[attr-defined]
        else:
            flt = ACTIVE if mode == "unfiltered" else And((ACTIVE, Eq("in_stock", True)))
            hits = floor.store.query(floor.items, floor.text[u], TEXT, K, filter=flt, exclude_ids=pushed)
            got = [h.id for h in hits]
        keep = {"category": catalog.category == cat, "in_stock": catalog.in_stock}.get(mode)
        found += len(set(got) & set(catalog.exact_top(floor.text[u], keep, pushed, K)))
    return found / (K * len(queries))


def measure_methods(floor: Floor, methods: list[str], queries: list[Query], out: dict[str, Any]) -> None:
    print(
        "\nraw: the store call; database: the Postgres read of a recommendation alone; seen: the least read"
        " any recommendation needs (user, seen ids, pending ids); floor: (raw + seen) / raw, the best ratio a"
        " store query that needs that read first can reach; in-process: QueryService.recommend"
    )
    print(
        f"{'method':8} {'raw p50':>9} {'database':>9} {'seen':>8} {'floor':>6} {'in-proc p50':>12} {'p99':>8}"
        "  in-proc / raw (target <= 1.5)  in-proc / (raw + database)"
    )
    for method in methods:
        compare(floor, method, queries[:30])  # warm up
        seen: list[float] = []
        raw, database, inproc = compare(floor, method, queries, seen)
        r50, d50, s50, i50 = pct(raw, 50), pct(database, 50), pct(seen, 50), pct(inproc, 50)
        out["methods"][method] = {
            "raw_p50": r50, "raw_p99": pct(raw, 99), "database_p50": d50, "seen_read_p50": s50,
            "floor": (r50 + s50) / r50, "p50": i50, "p99": pct(inproc, 99), "mean": sum(inproc) / len(inproc),
        }  # fmt: skip
        print(
            f"{method:8} {r50:7.2f}ms {d50:7.2f}ms {s50:6.2f}ms {(r50 + s50) / r50:5.2f}x {i50:10.2f}ms "
            f"{pct(inproc, 99):6.2f}ms  {i50 / r50:5.2f}x {'ok' if i50 <= 1.5 * r50 else 'MISSED':6}"
            f"  {i50 / (r50 + d50):19.2f}x"
        )


def measure_history(floor: Floor, methods: list[str], reps: int, seed: int, out: dict[str, Any]) -> None:
    rng = random.Random(seed)
    print(f"\nin-process p50 by seen-history size (raw p50 in brackets), {reps} queries each")
    print(f"{'history':>8} " + " ".join(f"{m:>18}" for m in methods))
    for size, users in floor.catalog.probes.items():
        queries = [(rng.choice(users), rng.randrange(len(CATEGORIES))) for _ in range(reps)]
        cells = []
        for method in methods:
            raw, _, inproc = compare(floor, method, queries)
            out["history"].setdefault(str(size), {})[method] = {
                "raw_p50": pct(raw, 50),
                "p50": pct(inproc, 50),
            }
            cells.append(f"{pct(inproc, 50):7.2f} ({pct(raw, 50):6.2f}) ms")
        print(f"{min(size, floor.catalog.n_items // 2):>8} " + " ".join(f"{c:>18}" for c in cells))


def train_model(
    url: str, store: VectorStore, settings: Settings, budget: float | None, out: dict[str, Any]
) -> None:
    """`nearrec train --budget` (or `--no-tune` with no budget): the library's train job."""
    from nearrec.jobs.train import manual_config, train

    config = manual_config(settings) if budget is None else None
    report = train(session_factory(make_engine(url)), store, settings, config, budget=budget)
    meta = report.meta
    assert meta is not None
    out["train_seconds"] = report.seconds
    print(
        f"train: {meta.family} ({meta.vector}) on {report.interactions:,} interactions in {report.seconds:.1f}s"
    )
    refresh_users(url, store, settings, out)


def build_index(store: VectorStore, settings: Settings, out: dict[str, Any]) -> None:
    """What the worker does once idle: the background HNSW build (IndexBuilder) and the search-effort
    calibration that follows it, timed."""
    from nearrec.sync.index import IndexBuilder
    from nearrec.vectors.payload import META_SEARCH

    items, users = settings.items_collection, settings.users_collection
    before = {c: store.unindexed_points(c) for c in (items, users)}  # type: ignore[attr-defined]
    builder = IndexBuilder(
        store, [items, users], settings.index_build_min_points, settings.target_recall, {items: users}
    )
    load = os.getloadavg()
    t0 = time.perf_counter()
    while builder.maybe_start() is not None:
        builder.join()
    out["build_seconds"] = elapsed = time.perf_counter() - t0
    out["build_load"] = [load, os.getloadavg()]
    after = {c: store.unindexed_points(c) for c in (items, users)}  # type: ignore[attr-defined]
    record = store.get_metadata(items).get(META_SEARCH) or {}
    out["calibration"] = record
    out["calibration_seconds"] = calibrated = float(record.get("seconds", 0.0))
    print(
        f"index: background build (worker's IndexBuilder, min {settings.index_build_min_points:,} points) "
        f"+ calibration {elapsed:.1f}s, of which calibration {calibrated:.1f}s; load average "
        f"{load[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end; unindexed before {before}, after {after}"
    )
    m, ef_construct = record.get("graph", [16, 100])
    print(
        f"  graph: m {m}, ef_construct {ef_construct} (the calibration rebuilds it denser if it loses to exact)"
    )
    for vector, chosen in sorted(record.get("vectors", {}).items()):
        effort = "exact search" if chosen.get("exact") else f"hnsw_ef {chosen.get('ef')}"
        tried = ", ".join(f"{ef}: {r:.3f} ({ms:.2f} ms)" for ef, r, ms in chosen.get("tried", []))
        print(
            f"  search effort {vector}: {effort} (recall@10 {chosen['recall']:.3f} on {chosen.get('probes')}, "
            f"target {record['target']}; exact {chosen['exact_ms']:.2f} ms; tried ef: {tried})"
        )
    if after[items] >= before[items]:
        print(
            "  (no HNSW graph: below the engine's indexing threshold, ~6,500 384-d points, search is exact)"
        )


def inprocess_cost(floor: Floor, method: str, queries: list[Query]) -> CpuCost:
    """CPU per in-process request (ms): this process (the query service) and the Postgres backends."""
    url = floor.settings.database_url.get_secret_value()  # type: ignore[union-attr]
    service, catalog = floor.service, floor.catalog
    database, mine = database_cpu(url), time.process_time()
    for u, cat in queries:
        service.recommend(catalog.user_name(u), k=K, filter={"category": CATEGORIES[cat]}, method=method)
    spent, after = time.process_time() - mine, database_cpu(url)
    per = 1000 / len(queries)
    return CpuCost(spent * per, None if database is None or after is None else (after - database) * per, 0.0)


def inprocess_load(floor: Floor, method: str, queries: list[Query], clients: int = 8) -> dict[str, Any]:
    """The in-process path at saturation: ``clients`` threads calling QueryService.recommend back to back on
    ``queries`` (the HTTP clients' mix, without HTTP): its rate and CPU per request."""
    url = floor.settings.database_url.get_secret_value()  # type: ignore[union-attr]
    service, catalog = floor.service, floor.catalog

    def call(u: int, cat: int) -> Callable[[], object]:
        flt = {"category": CATEGORIES[cat]}
        return lambda: service.recommend(catalog.user_name(u), k=K, filter=flt, method=method)

    load, cost = inprocess_saturation(url, [call(u, cat) for u, cat in queries], clients)
    return {"load": vars(load), "cpu": vars(cost)}


def report_http(out: dict[str, Any], default: str, half_p50_target: float = 1.5) -> None:
    sat, half, i50 = out["http_saturation"], out["http_half"], out["methods"][default]["p50"]
    capacity = 1000 / i50
    cost, local = out["http_cpu"], out["inprocess_cpu"]
    total = cost["server_ms"] + (cost["database_ms"] or 0) + cost["client_ms"]
    bound = (os.cpu_count() or 1) * 1000 / total
    db = "n/a" if local["database_ms"] is None else f"{local['database_ms']:.2f}"
    single = out["http_single"]
    print(
        f"\nHTTP ({default}, the default method), one client: p50 {single['p50_ms']:.2f} ms = "
        f"{single['p50_ms'] / i50:.2f}x in-process (+{single['p50_ms'] - i50:.2f} ms), p99 {single['p99_ms']:.2f} ms"
        f"\n8 clients\n"
        f"  saturation (closed loop): {sat['rate']:.0f} req/s, p50 {sat['p50_ms']:.2f} ms; "
        f"1000 / in-process p50 = {capacity:.0f} req/s: ratio {sat['rate'] / capacity:.2f} (target >= 1)\n"
        f"  CPU per request: in-process {local['server_ms']:.2f} ms (+ database {db}); over HTTP server "
        f"{cost['server_ms']:.2f} ms (HTTP's own {cost['server_ms'] - local['server_ms']:.2f}), database "
        f"{cost['database_ms'] or 0:.2f}, client {cost['client_ms']:.2f}: {total:.2f} ms in all\n"
        f"  so {os.cpu_count()} cores serve at most {bound:.0f} req/s = {bound / capacity:.2f} of 1000 / in-process "
        f"p50 (the mean request costs more than the median one, and the client shares the cores)\n"
        f"  paced at {half['rate']:.0f} req/s (half): p50 {half['p50_ms']:.2f} ms = "
        f"{half['p50_ms'] / i50:.2f}x in-process (target <= {half_p50_target}), p99 {half['p99_ms']:.2f} ms = "
        f"{half['p99_ms'] / i50:.2f}x in-process p50 (target <= 3)\n"
        f"  server RSS after the load {out['rss_mb']:.0f} MB (peak {out['rss_peak_mb']:.0f} MB)"
    )
    report_inprocess_saturation(out, default)


def report_inprocess_saturation(out: dict[str, Any], default: str) -> None:
    """The in-process path's own saturation beside HTTP's: what HTTP costs in throughput."""
    inproc, method = out["inprocess_saturation"], out["methods"][default]
    rate, cpu, http = inproc["load"]["rate"], inproc["cpu"], out["http_saturation"]["rate"]
    db = "n/a" if cpu["database_ms"] is None else f"{cpu['database_ms']:.2f}"
    print(
        f"  in-process at saturation (8 threads, the same mix, no HTTP): {rate:.0f} req/s = "
        f"{rate * method['p50'] / 1000:.2f} of 1000 / in-process p50 (1000 / in-process mean = "
        f"{1000 / method['mean']:.0f} req/s), CPU per request {cpu['server_ms']:.2f} ms (+ database {db})\n"
        f"  HTTP saturation / in-process saturation = {http / rate:.2f} (what HTTP itself costs in throughput; "
        f"proposed target >= {HTTP_SATURATION_TARGET})"
    )


def report_baseline(out: dict[str, Any], path: Path) -> None:
    base = json.loads(path.read_text())
    print(
        f"\nagainst {path} ({base['items']:,} items, {base.get('vectors', 'random')} vectors); "
        "targets: recall >= 0.95, p50 < 3x"
    )
    for key in ("recall", "recall_in_stock", "recall_unfiltered"):
        if key in out:
            print(f"  {key} {out[key]:.3f} (baseline {base.get(key, float('nan')):.3f})")
    for method, now in out["methods"].items():
        then = base["methods"].get(method)
        if then:
            print(
                f"  {method:8} raw p50 {now['raw_p50']:.2f} ms / {then['raw_p50']:.2f} ms = "
                f"{now['raw_p50'] / then['raw_p50']:.2f}x, in-process p50 {now['p50']:.2f} ms / "
                f"{then['p50']:.2f} ms = {now['p50'] / then['p50']:.2f}x "
                f"{'ok' if now['p50'] < 3 * then['p50'] else 'MISSED'}"
            )
    rss = (
        f"; RSS {out['rss_mb']:.0f} vs {base['rss_mb']:.0f} MB"
        if "rss_mb" in out and "rss_mb" in base
        else ""
    )
    print(f"  build + calibration {out['build_seconds']:.0f}s vs {base['build_seconds']:.0f}s{rss}")


def run(args: argparse.Namespace, url: str, tmp: Path) -> dict[str, Any]:
    from nearrec.vectors.edge import EdgeVectorStore

    migrate.upgrade(url)
    settings = Settings(  # type: ignore[call-arg]
        database_url=SecretStr(url), data_dir=tmp, embedding_model=MODEL, _env_file=None,
        index_build_min_points=min(50_000, args.items // 2),
    )  # fmt: skip
    out: dict[str, Any] = {"items": args.items, "users": args.users, "methods": {}, "history": {}}
    catalog = fill_postgres(url, args.items, args.users, args.probes, args.seed)
    store = EdgeVectorStore(tmp / "vectors")
    fill_store(url, store, settings, catalog, args.seed, args.vectors)
    out["vectors"] = args.vectors
    train_model(url, store, settings, None if args.no_tune else args.train_budget, out)
    build_index(store, settings, out)
    if args.lock:  # the setup and the build are done: from here on, one timed benchmark at a time
        waited = time.perf_counter()
        lock = os.open(args.lock, os.O_RDWR | os.O_CREAT)
        fcntl.flock(lock, fcntl.LOCK_EX)
        print(
            f"holding {args.lock} (waited {time.perf_counter() - waited:.0f}s); load average {os.getloadavg()}"
        )

    service = QueryService(read_sessions(make_engine(url)), store, settings)
    floor = Floor(service, store, settings, catalog)
    rng = random.Random(args.seed)
    queries = [(rng.randrange(args.users), rng.randrange(len(CATEGORIES))) for _ in range(args.queries)]
    floor.prepare({u for u, _ in queries} | {u for users in catalog.probes.values() for u in users})
    sample = queries[: args.recall_queries]
    print(f"\nrecall@10 of the store text query vs numpy exact search (same filter and exclusion), "
          f"{len(sample)} queries, target >= 0.95:")  # fmt: skip
    for mode, what in RECALL_FILTERS.items():
        out["recall" if mode == "category" else f"recall_{mode}"] = found = recall(floor, sample, mode)
        print(f"  {found:.3f} under {what}")
    methods = list(args.methods.split(","))
    measure_methods(floor, methods, queries, out)
    measure_history(floor, methods, args.history_queries, args.seed, out)

    default = "hybrid" if floor.meta is not None else "text"
    http = bool(args.http_queries) and default in out["methods"]
    if http:
        out["inprocess_cpu"] = vars(inprocess_cost(floor, default, queries))
        out["inprocess_saturation"] = inprocess_load(floor, default, queries)
    store.close()  # the server process owns the store from here on
    if http:
        users = [catalog.user_name(u) for u in range(args.users)]
        single, sat, cost, half, rss, peak = http_figures(url, tmp, users, args.http_queries, 8, args.seed)
        out["http_single"] = vars(single)
        out.update(
            http_saturation=vars(sat), http_cpu=vars(cost), http_half=vars(half), rss_mb=rss, rss_peak_mb=peak
        )
        report_http(out, default)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument(
        "--probes", type=int, default=10, help="Users of each history size (20, 200, 2,000, 5,000)"
    )
    ap.add_argument("--queries", type=int, default=1000, help="In-process queries per method")
    ap.add_argument("--recall-queries", type=int, default=300)
    ap.add_argument("--history-queries", type=int, default=100, help="Queries per history size and method")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument(
        "--train-budget", type=float, default=60.0, help="Seconds of tuning (nearrec train --budget)"
    )
    ap.add_argument(
        "--no-tune", action="store_true", help="Train the untuned ridge model (nearrec train --no-tune)"
    )
    ap.add_argument("--http-queries", type=int, default=3000, help="Requests per HTTP phase (0: no HTTP)")
    ap.add_argument("--out", type=Path, help="Write the figures as JSON here")
    ap.add_argument("--baseline", type=Path, help="The --out file of a smaller run: print the ratios to it")
    ap.add_argument(
        "--lock",
        help="Take this lock file (flock) for the timed part only: the data generation and the training "
        "run before it, without holding other benchmarks up",
    )
    ap.add_argument(
        "--vectors",
        choices=VECTOR_KINDS,
        default="random",
        help="random (no structure: the worst case for a graph) or clustered (closer to real embeddings)",
    )
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("nearrec.sync.index").setLevel(logging.INFO)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    url, drop = scratch_database()
    tmp = Path(tempfile.mkdtemp(prefix="nearrec-bench-query-"))
    try:
        out = run(args, url, tmp)
    finally:
        drop()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    out["load_average_end"] = os.getloadavg()
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))
    if args.baseline:
        report_baseline(out, args.baseline)


if __name__ == "__main__":
    main()
