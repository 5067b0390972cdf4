"""The data of bench/query.py: a scratch Postgres database and an embedded store filled with a generated catalog,
users and interactions, and the exact (numpy) search the store's answers are checked against.

Vectors (``kind``): ``random``, 384-d Gaussian (no neighbourhood structure: the worst case for a graph index),
or ``clustered``, closer to real embeddings: each vector is one of :data:`CLUSTERS` random unit centres plus
isotropic noise of norm :data:`NOISE` (two vectors of one cluster have cosine ~0.64, of two clusters ~0), the
users' text vectors drawn the same way."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import make_url

from nearrec.config import Settings
from nearrec.model.user_vector import UserVectorParams, params_fingerprint
from nearrec.postgres import schema_repo, sync_repo
from nearrec.postgres.engine import make_engine, session_factory
from nearrec.postgres.notify import libpq_conninfo
from nearrec.postgres.scratch import create_database, drop_database
from nearrec.sync.collections import ItemSchema, ensure_collections
from nearrec.sync.users import state_hash
from nearrec.vectors.base import PointRecord, VectorStore
from nearrec.vectors.payload import CONTENT_HASH

DIM = 384
MODEL = f"hashing:{DIM}"  # the model id recorded on the collections; vectors are random, nothing is embedded
CATEGORIES = [f"cat{i:02d}" for i in range(20)]
HISTORY_SIZES = (20, 200, 2000, 5000)
VECTOR_KINDS = ("random", "clustered")
CLUSTERS = 1000
NOISE = 0.75
TYPES = ("view", "view", "view", "click", "purchase")  # mostly views, some stronger signals for training


@dataclass
class Catalog:
    """What the bench needs to know about the generated data (internal ids = COPY order + 1)."""

    n_items: int
    category: np.ndarray  # category index of item id i + 1
    price: np.ndarray
    in_stock: np.ndarray
    unit: np.ndarray  # the items' text vectors, normalised (the store's cosine), row i = item id i + 1
    seen: list[list[int]] = field(default_factory=list)  # per user (internal id u + 1), most recent first
    probes: dict[int, list[int]] = field(default_factory=dict)  # history size -> users (indices into seen)

    def user_name(self, u: int) -> str:
        return f"user-{u}"

    def exact_top(
        self, query: np.ndarray, keep: np.ndarray | None, excluded: Iterable[int], k: int
    ) -> list[int]:
        """Exact top ``k`` item ids by cosine among the items where the boolean mask ``keep`` is true (None:
        all; all are active), none of ``excluded``: numpy brute force on the same vectors the store holds."""
        scores = self.unit @ (query / np.linalg.norm(query)).astype(np.float32)
        if keep is not None:
            scores[~keep] = -np.inf
        scores[np.fromiter(excluded, np.int64) - 1] = -np.inf
        top = np.argpartition(-scores, k)[:k]
        return [int(j) + 1 for j in top[np.argsort(-scores[top])]]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def scratch_database() -> tuple[str, Callable[[], None]]:
    base = os.environ.get("NEARREC_DATABASE_URL")
    if base is None:
        try:
            socket.create_connection(("127.0.0.1", 5432), timeout=0.5).close()
            base = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        except OSError:
            from nearrec.postgres.embedded_server import start_embedded_postgres

            base = start_embedded_postgres(Path(tempfile.mkdtemp(prefix="nearrec-bench-pg-")))
    name = f"nearrec_bench_query_{os.getpid()}"
    return create_database(base, name), lambda: drop_database(base, name)


def copy_rows(url: str, table: str, columns: list[str], rows: Iterable[tuple[object, ...]]) -> None:
    import psycopg

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:  # our own constants
            for row in rows:
                copy.write_row(row)
        conn.commit()


def history_sizes(n_users: int, n_items: int, rng: np.random.Generator, probes: int) -> list[int]:
    """Seen items per user: log-uniform 20-2,000 for the ``n_users`` users, then ``probes`` users of each
    of :data:`HISTORY_SIZES` (at most half the catalog)."""
    sizes = [min(int(np.exp(rng.uniform(np.log(20), np.log(2000)))), n_items // 2) for _ in range(n_users)]
    for size in HISTORY_SIZES:
        sizes += [min(size, n_items // 2)] * probes
    return sizes


def fill_postgres(url: str, n_items: int, n_users: int, probes: int, seed: int) -> Catalog:
    """Items, users and their interactions (the most recent in the last hour, so the popularity window
    counts them all)."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    cats = rng.integers(0, len(CATEGORIES), n_items)
    prices = np.round(rng.uniform(1, 500, n_items), 2)
    stock = rng.random(n_items) < 0.8
    attrs = (
        json.dumps({"category": CATEGORIES[cats[i]], "price": float(prices[i]), "in_stock": bool(stock[i])})
        for i in range(n_items)
    )
    copy_rows(
        url,
        "items",
        ["external_id", "title", "text", "attributes", "content_hash"],
        ((f"item-{i}", f"Item {i}", f"text {i}", a, "x") for i, a in enumerate(attrs)),
    )
    sizes = history_sizes(n_users, n_items, rng, probes)
    catalog = Catalog(n_items, cats, prices, stock, np.zeros((0, DIM), np.float32))
    copy_rows(url, "users", ["external_id"], [(catalog.user_name(u),) for u in range(len(sizes))])
    now = time.time() - 60
    stamps = [
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - max(sizes) + j)) for j in range(max(sizes))
    ]

    def rows() -> Iterable[tuple[object, ...]]:
        for u, n in enumerate(sizes):
            items = rng.choice(n_items, size=n, replace=False) + 1
            kinds = rng.integers(0, len(TYPES), n)
            catalog.seen.append([int(i) for i in items[::-1]])  # the last written is the most recent
            offset = len(stamps) - n
            for j, it in enumerate(items):
                yield (u + 1, int(it), TYPES[kinds[j]], stamps[offset + j])

    copy_rows(url, "interactions", ["user_id", "item_id", "type", "occurred_at"], rows())
    with session_factory(make_engine(url)).begin() as session:  # what an ingest records
        schema_repo.add(session, "item", {"category": "string", "price": "float", "in_stock": "bool"})
    # VACUUM too: after a bulk load autovacuum would otherwise run during the timed part (the visibility map
    # it writes is also what lets index-only scans skip the heap).
    with make_engine(url).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    for n, size in enumerate(HISTORY_SIZES):
        catalog.probes[size] = list(range(n_users + n * probes, n_users + (n + 1) * probes))
    total = sum(sizes)
    print(
        f"postgres: {n_items:,} items, {len(sizes):,} users ({n_users:,} + {probes} per history size "
        f"{', '.join(map(str, HISTORY_SIZES))}), {total:,} interactions in {time.perf_counter() - t0:.1f}s"
    )
    return catalog


def vectors(rng: np.random.Generator, n: int, kind: str, centres: np.ndarray | None) -> np.ndarray:
    """``n`` vectors of ``kind`` (float32; ``centres``: the clusters of ``clustered``)."""
    if kind == "random" or centres is None:
        return rng.standard_normal((n, DIM), dtype=np.float32)
    noise = rng.standard_normal((n, DIM), dtype=np.float32)
    noise *= NOISE / np.linalg.norm(noise, axis=1, keepdims=True)
    noise += centres[rng.integers(0, len(centres), n)]
    return noise


def fill_store(
    url: str, store: VectorStore, settings: Settings, catalog: Catalog, seed: int, kind: str = "random"
) -> None:
    """The collections as the worker creates them, item and user text vectors of ``kind``."""
    rng = np.random.default_rng(seed + 1)
    centres = None
    if kind == "clustered":
        centres = rng.standard_normal((CLUSTERS, DIM), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    t0 = time.perf_counter()
    with session_factory(make_engine(url)).begin() as session:
        ensure_collections(session, store, settings.items_collection, settings.users_collection, MODEL, DIM)
    with session_factory(make_engine(url))() as session:  # as the worker does: index and record attributes
        schema = ItemSchema.load(session)
    schema.ensure_indexes(store, settings.items_collection)
    n_items = catalog.n_items
    vecs = vectors(rng, n_items, kind, centres)
    for start in range(0, n_items, 2000):
        store.upsert(
            settings.items_collection,
            [item_point(schema, i, vecs[i], catalog) for i in range(start, min(n_items, start + 2000))],
        )
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    catalog.unit = vecs
    n_users = len(catalog.seen)
    hashes = user_hashes(url, settings, n_users)
    for start in range(0, n_users, 2000):
        users = vectors(rng, min(n_users, start + 2000) - start, kind, centres)
        store.upsert(
            settings.users_collection,
            [
                PointRecord(
                    start + n + 1,
                    {"text": v, "profile": v},
                    {"external_id": f"user-{start + n}", CONTENT_HASH: hashes[start + n + 1]},
                )
                for n, v in enumerate(users)
            ],
        )
    elapsed = time.perf_counter() - t0
    print(
        f"vectors ({kind}): {n_items + n_users:,} points upserted in {elapsed:.1f}s "
        f"({(n_items + n_users) / elapsed:,.0f}/s)"
    )


def refresh_users(url: str, store: VectorStore, settings: Settings, out: dict[str, Any]) -> None:
    """What a deployment's worker does after a training: drain the user refreshes it enqueued (each user's
    cf fold-in stored in Postgres under the new model's tag)."""
    from nearrec.embedding import load_embedder
    from nearrec.sync.worker import SyncWorker

    engine = make_engine(url)
    try:
        worker = SyncWorker(session_factory(engine), store, load_embedder(settings), settings)
        t0 = time.perf_counter()
        report = worker.drain()
        out["refresh_seconds"] = elapsed = time.perf_counter() - t0
        # As after the load (fill_postgres): the rows the worker updated and deleted, vacuumed now rather
        # than by autovacuum during the timed part.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE users, sync_outbox"))
    finally:
        engine.dispose()
    print(
        f"worker: {report.rows:,} user refreshes, {report.users.cf_stored:,} cf fold-ins stored, "
        f"{report.users.computed:,} text vectors recomputed in {elapsed:.1f}s"
    )


def user_hashes(url: str, settings: Settings, n_users: int) -> dict[int, str]:
    """The content hash of each user's state, as the worker records it on the user's point: a worker refresh
    then keeps the bench's text vectors and only stores the users' cf fold-ins."""
    fingerprint = params_fingerprint(UserVectorParams.from_settings(settings))
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            states = sync_repo.load_users(session, list(range(1, n_users + 1)))
    finally:
        engine.dispose()
    return {u.id: state_hash(u, fingerprint) for u in states}


def item_point(schema: ItemSchema, i: int, vec: np.ndarray, catalog: Catalog) -> PointRecord:
    """Item ``i``'s point with the payload the worker writes."""
    attributes = {
        "category": CATEGORIES[catalog.category[i]],
        "price": float(catalog.price[i]),
        "in_stock": bool(catalog.in_stock[i]),
    }
    return PointRecord(i + 1, {"text": vec}, schema.payload(f"item-{i}", "x", True, attributes, f"Item {i}"))


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident set size and its peak (VmHWM) of process ``pid``, in MB."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = float(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def database_cpu(url: str) -> float | None:
    """CPU seconds used so far by the Postgres backends connected to ``url``'s database (None when they are not
    processes of this machine): the database's share of a request, which a process's own CPU time leaves out."""
    import psycopg

    name = make_url(url).database
    with psycopg.connect(libpq_conninfo(url)) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,)
        ).fetchall()
    try:
        return sum(cpu_seconds(int(pid)) for (pid,) in rows)
    except (OSError, IndexError):
        return None
