"""Query latency: `recommend` with a category filter, in-process and over HTTP, against the raw store query.

    .venv/bin/python bench/query.py [--items 100000] [--users 10000] [--queries 2000] [--local-mode-items 20000]

Builds a catalog of random 384-d item vectors (20 categories, a price, an in-stock flag) and users with 20-2,000
seen items (log-uniform) in a scratch Postgres database (NEARREC_DATABASE_URL's server, else 127.0.0.1:5432,
else an embedded Postgres) and an embedded vector store, then measures, in the SAME run:

- raw:        VectorStore.query with the same filter (category + active) and the user's most recent seen ids
              as the must_not has_id exclusion: the floor any recommender on this store pays;
- in-process: QueryService.recommend (user lookup, seen ids, user vector, query, exclusion, titles);
- HTTP:       GET /v1/users/{id}/recommendations on `nearrec serve` in its own process, 8 concurrent clients
              (threads with a keep-alive connection each, in this process): first closed loop (each client
              sends as soon as its answer arrives: the saturation throughput), then open loop at fixed total
              rates below saturation, latency counted from each request's scheduled time.

Targets (embedded default): in-process p50 <= 2x raw p50; HTTP p50 <= 10 ms, p99 <= 30 ms. The server adapter
(qdrant-client) is measured too, in qdrant-client's LOCAL MODE (pure Python, no Qdrant server can run here) on a
smaller catalog (--local-mode-items); its figures say nothing about a real Qdrant server.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from pydantic import SecretStr  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from nearrec.config import Settings  # noqa: E402
from nearrec.filters import And, Eq  # noqa: E402
from nearrec.postgres import migrate  # noqa: E402
from nearrec.postgres.engine import make_engine, read_sessions, session_factory  # noqa: E402
from nearrec.postgres.scratch import create_database, drop_database  # noqa: E402
from nearrec.query.service import QueryService  # noqa: E402
from nearrec.sync.collections import ensure_collections  # noqa: E402
from nearrec.vectors.base import PointRecord, VectorStore  # noqa: E402

DIM = 384
MODEL = f"hashing:{DIM}"  # the model id recorded on the collections; vectors are random, nothing is embedded
CATEGORIES = [f"cat{i:02d}" for i in range(20)]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def scratch_database() -> tuple[str, Callable[[], None]]:
    base = os.environ.get("NEARREC_DATABASE_URL")
    if base is None:
        import socket

        try:
            socket.create_connection(("127.0.0.1", 5432), timeout=0.5).close()
            base = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        except OSError:
            from nearrec.postgres.embedded_server import start_embedded_postgres

            base = start_embedded_postgres(Path(tempfile.mkdtemp(prefix="nearrec-bench-pg-")))
    name = f"nearrec_bench_query_{os.getpid()}"
    return create_database(base, name), lambda: drop_database(base, name)


def copy_rows(url: str, table: str, columns: list[str], rows: list[tuple[object, ...]]) -> None:
    import psycopg

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:  # our own constants
            for row in rows:
                copy.write_row(row)
        conn.commit()


def build(
    url: str, store: VectorStore, settings: Settings, n_items: int, n_users: int, seed: int
) -> list[list[int]]:
    """Fill Postgres and the store; return each user's seen item ids, most recent first."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    cats = rng.integers(0, len(CATEGORIES), n_items)
    prices = np.round(rng.uniform(1, 500, n_items), 2)
    stock = rng.random(n_items) < 0.8
    import json

    copy_rows(
        url,
        "items",
        ["external_id", "title", "text", "attributes", "content_hash"],
        [
            (
                f"item-{i}",
                f"Item {i}",
                f"text {i}",
                json.dumps(
                    {"category": CATEGORIES[cats[i]], "price": float(prices[i]), "in_stock": bool(stock[i])}
                ),
                "x",
            )
            for i in range(n_items)
        ],
    )
    copy_rows(url, "users", ["external_id"], [(f"user-{u}",) for u in range(n_users)])
    seen: list[list[int]] = []
    buf = []
    base = 1_700_000_000
    for u in range(n_users):
        n = min(int(np.exp(rng.uniform(np.log(20), np.log(2000)))), n_items // 2)
        items = rng.choice(n_items, size=n, replace=False) + 1  # identity ids start at 1, in COPY order
        seen.append([int(i) for i in items[::-1]])  # last written = most recent
        for j, it in enumerate(items):
            buf.append(
                (u + 1, int(it), "view", f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(base + j))}Z")
            )
    copy_rows(url, "interactions", ["user_id", "item_id", "type", "occurred_at"], buf)
    with make_engine(url).begin() as conn:
        conn.execute(text("ANALYZE"))
    print(
        f"postgres: {n_items:,} items, {n_users:,} users, {len(buf):,} interactions in {time.perf_counter() - t0:.1f}s"
    )

    t0 = time.perf_counter()
    with session_factory(make_engine(url)).begin() as session:
        ensure_collections(session, store, settings.items_collection, settings.users_collection, MODEL, DIM)
    from nearrec.postgres import schema_repo
    from nearrec.sync.collections import ItemSchema

    with session_factory(make_engine(url)).begin() as session:  # the attribute types an ingest would declare
        schema_repo.add(session, "item", {"category": "string", "price": "float", "in_stock": "bool"})
    with session_factory(make_engine(url))() as session:  # as the worker does: index and record attributes
        ItemSchema.load(session).ensure_indexes(store, settings.items_collection)
    vecs = rng.standard_normal((n_items, DIM), dtype=np.float32)
    for start in range(0, n_items, 2000):
        store.upsert(
            settings.items_collection,
            [
                PointRecord(
                    i + 1,
                    {"text": vecs[i]},
                    {
                        "external_id": f"item-{i}",
                        "content_hash": "x",
                        "active": 1,
                        "category": CATEGORIES[cats[i]],
                        "price": float(prices[i]),
                        "in_stock": int(stock[i]),
                    },
                )
                for i in range(start, min(n_items, start + 2000))
            ],
        )
    users = rng.standard_normal((n_users, DIM), dtype=np.float32)
    for start in range(0, n_users, 2000):
        store.upsert(
            settings.users_collection,
            [
                PointRecord(u + 1, {"text": users[u], "profile": users[u]}, {"external_id": f"user-{u}"})
                for u in range(start, min(n_users, start + 2000))
            ],
        )
    elapsed = time.perf_counter() - t0
    print(
        f"vectors: {n_items + n_users:,} points upserted in {elapsed:.1f}s ({(n_items + n_users) / elapsed:,.0f}/s)"
    )
    return seen


def measure(
    label: str,
    store: VectorStore,
    settings: Settings,
    url: str,
    seen: list[list[int]],
    queries: int,
    seed: int,
) -> tuple[float, float]:
    rng = random.Random(seed)
    service = QueryService(read_sessions(make_engine(url)), store, settings)
    users = [rng.randrange(len(seen)) for _ in range(queries)]
    cats = [rng.choice(CATEGORIES) for _ in range(queries)]
    user_vecs = {
        h.id: h.vector["text"]
        for h in store.retrieve(settings.users_collection, [u + 1 for u in set(users)], with_vectors=True)
        if h.vector
    }
    limit = settings.seen_filter_limit
    raw: list[float] = []
    inproc: list[float] = []
    for n, (u, c) in enumerate(zip(users, cats, strict=True)):
        flt = And((Eq("active", 1), Eq("category", c)))
        t = time.perf_counter()
        store.query(
            settings.items_collection, user_vecs[u + 1], "text", 10, filter=flt, exclude_ids=seen[u][:limit]
        )
        raw.append(time.perf_counter() - t)
        t = time.perf_counter()
        recs = service.recommend(f"user-{u}", k=10, filter={"category": c})
        inproc.append(time.perf_counter() - t)
        if n == 0:
            assert len(recs) == 10
    r50, i50 = pct(raw, 50) * 1000, pct(inproc, 50) * 1000
    print(
        f"[{label}] raw store query   p50 {r50:6.2f} ms  p99 {pct(raw, 99) * 1000:6.2f} ms  ({queries} queries)"
    )
    print(
        f"[{label}] recommend in-proc p50 {i50:6.2f} ms  p99 {pct(inproc, 99) * 1000:6.2f} ms  "
        f"ratio p50 {i50 / r50:.2f}x raw (target <= 2.0)"
    )
    return r50, i50


def _drive(base: str, n_users: int, queries: int, clients: int, rate: float) -> tuple[list[float], float]:
    """``clients`` threads with one keep-alive connection each. rate 0: closed loop (each sends as soon as its
    previous answer arrives). rate > 0: open loop at ``rate`` req/s in total; latency is measured from each
    request's scheduled time, so a slow answer also delays (and is charged to) the ones queued behind it."""
    import httpx

    lat: list[float] = []
    lock = threading.Lock()
    per_client = queries // clients
    interval = clients / rate if rate else 0.0

    def run(seed: int) -> None:
        rng = random.Random(seed)
        mine = []
        with httpx.Client(base_url=base) as http:
            for _ in range(50):  # warm up the connection and the server's per-connection statement cache
                http.get(f"/v1/users/user-{rng.randrange(n_users)}/recommendations")
            start = time.perf_counter() + rng.random() * interval
            for n in range(per_client):
                due = start + n * interval
                if interval:
                    time.sleep(max(0.0, due - time.perf_counter()))
                t = due if interval else time.perf_counter()
                params = {"k": 10, "filter": f'{{"category": "{rng.choice(CATEGORIES)}"}}'}
                r = http.get(f"/v1/users/user-{rng.randrange(n_users)}/recommendations", params=params)
                mine.append(time.perf_counter() - t)
                assert r.status_code == 200, r.text
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=run, args=(s,)) for s in range(clients)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return lat, time.perf_counter() - t0


def http_load(
    url: str, data_dir: Path, n_users: int, queries: int, rates: list[float], clients: int = 8
) -> None:
    import httpx

    port = 18765
    env = {
        **os.environ,
        "NEARREC_DATABASE_URL": url,
        "NEARREC_DATA_DIR": str(data_dir),
        "NEARREC_EMBEDDING_MODEL": MODEL,
        "NEARREC_LOG_LEVEL": "WARNING",
    }
    env.pop("NEARREC_API_KEYS", None)
    proc = subprocess.Popen([sys.executable, "-m", "nearrec", "serve", "--port", str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("server did not become ready")
            time.sleep(0.2)
        for rate in rates or [0.0]:
            lat, wall = _drive(base, n_users, queries, clients, rate)
            mode = f"paced at {rate:.0f} req/s" if rate else "closed loop (saturation)"
            print(
                f"[HTTP, {clients} clients, {mode}] p50 {pct(lat, 50) * 1000:6.2f} ms  "
                f"p99 {pct(lat, 99) * 1000:6.2f} ms  {len(lat) / wall:,.0f} req/s  "
                "(targets: p50 <= 10 ms, p99 <= 30 ms)"
            )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--http-queries", type=int, default=4000)
    ap.add_argument(
        "--http-rates",
        default="0,100,150",
        help="Total request rates to drive over HTTP, in order (req/s); 0 = closed loop, as fast as answers "
        "come: the saturation throughput (it runs first and also warms the server up)",
    )
    ap.add_argument("--local-mode-items", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    url, drop = scratch_database()
    tmp = Path(tempfile.mkdtemp(prefix="nearrec-bench-query-"))
    try:
        migrate.upgrade(url)
        settings = Settings(database_url=SecretStr(url), data_dir=tmp, embedding_model=MODEL, _env_file=None)  # type: ignore[call-arg]
        from nearrec.vectors.edge import EdgeVectorStore

        store = EdgeVectorStore(tmp / "vectors")
        seen = build(url, store, settings, args.items, args.users, args.seed)
        measure("embedded qdrant-edge", store, settings, url, seen, args.queries, args.seed)
        store.close()  # the server process owns the store from here on
        http_load(url, tmp, args.users, args.http_queries, [float(r) for r in args.http_rates.split(",")])
    finally:
        drop()

    if args.local_mode_items:
        url, drop = scratch_database()
        try:
            migrate.upgrade(url)
            settings = Settings(
                database_url=SecretStr(url), data_dir=tmp, embedding_model=MODEL, _env_file=None
            )  # type: ignore[call-arg]
            from qdrant_client import QdrantClient

            from nearrec.vectors.server import ServerVectorStore

            local = ServerVectorStore(QdrantClient(":memory:"), where="qdrant-client local mode")
            n_users = max(100, args.users * args.local_mode_items // args.items)
            seen = build(url, local, settings, args.local_mode_items, n_users, args.seed)
            measure(
                f"server adapter, qdrant-client LOCAL MODE, {args.local_mode_items:,} items",
                local,
                settings,
                url,
                seen,
                max(50, args.queries // 20),
                args.seed,
            )
            local.close()
        finally:
            drop()


if __name__ == "__main__":
    main()
