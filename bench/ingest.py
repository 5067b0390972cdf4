"""Ingestion throughput vs raw COPY, and peak memory.

Generates an item catalog (default 100,000 items with ~40-word descriptions) and an interaction log
(default 1,000,000 rows over 10,000 users and 50,000 of those items) as CSV in a temporary directory, then
in the same run and on the same server:

1. raw psycopg COPY of the file into a bare table with the file's columns (no index, no constraint);
2. ``nearrec ingest items|interactions`` in-process (validation, typed attributes, upsert, outbox);
3. a raw COPY of the rows nearrec stored (internal ids) into a table with the same columns, indexes and
   foreign keys as ``items`` / ``interactions``: the cost of the schema itself, which no loader avoids.

It prints rows/s for each, the ratios, and the peak RSS of the process. Targets (issue 3): items >= 0.3
and interactions >= 0.5 of raw COPY, peak RSS < 500 MB.

Runs on a scratch database that it creates and drops, on the server of ``NEARREC_DATABASE_URL`` (default
the local server ``postgresql://postgres@127.0.0.1:5432``)::

    .venv/bin/python bench/ingest.py [--interactions 1000000] [--items 100000]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from nearrec.cli.main import cli  # noqa: E402
from nearrec.postgres import migrate  # noqa: E402
from nearrec.postgres.engine import normalise_url  # noqa: E402

TYPES = ["view", "view", "view", "click", "click", "like", "purchase", "rating", "dislike"]
CATEGORIES = ["books", "music", "garden", "kitchen", "toys", "sports", "outdoor", "office", "beauty", "tools"]


def _words(rng: random.Random, n: int) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "ve", "do", "an", "el", "or", "us", "ix"]
    return ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(n)]


def generate_items(path: Path, n: int, rng: random.Random) -> None:
    vocab = _words(rng, 3000)
    with open(path, "w", encoding="utf-8") as out:
        out.write("id,title,description,category,price,in_stock,tags\n")
        for i in range(n):
            title = " ".join(rng.choices(vocab, k=3)).title()
            description = " ".join(rng.choices(vocab, k=40))
            tags = "|".join(rng.sample(CATEGORIES, 2))
            stock = "true" if rng.random() < 0.8 else "false"
            price = f"{rng.uniform(1, 500):.2f}"
            out.write(f'i{i},{title},"{description}",{rng.choice(CATEGORIES)},{price},{stock},{tags}\n')


def generate_interactions(path: Path, n: int, users: int, items: int, rng: random.Random) -> None:
    start = 1_600_000_000
    with open(path, "w", encoding="utf-8") as out:
        out.write("user_id,item_id,type,value,timestamp,event_id\n")
        for k in range(n):
            kind = rng.choice(TYPES)
            value = str(rng.randint(1, 5)) if kind == "rating" else ""
            out.write(
                f"u{rng.randrange(users)},i{rng.randrange(items)},{kind},{value},{start + 17 * k},e{k}\n"
            )


@contextmanager
def scratch_database(server_url: str) -> Iterator[tuple[str, str]]:
    """A new database on the server, dropped afterwards; yields (SQLAlchemy URL, psycopg URL)."""
    base = make_url(normalise_url(server_url))
    name = f"nearrec_bench_{os.getpid()}"
    admin_url = base.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            scratch = base.set(database=name)
            yield (
                scratch.render_as_string(hide_password=False),
                scratch.set(drivername="postgresql").render_as_string(hide_password=False),
            )
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def raw_copy(conninfo: str, table_ddl: sql.SQL, copy: sql.SQL, path: Path) -> float:
    """Seconds to stream the file's bytes into COPY (the server parses the CSV)."""
    with psycopg.connect(conninfo) as conn:
        conn.execute(table_ddl)
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(copy) as cp, open(path, "rb") as f:
            while block := f.read(1 << 20):
                cp.write(block)
        conn.commit()
        return time.perf_counter() - started


def nearrec_ingest(args: list[str]) -> float:
    started = time.perf_counter()
    cli.main(["ingest", *args, "--quiet", "--json"], prog_name="nearrec", standalone_mode=False)
    return time.perf_counter() - started


def schema_copy(conninfo: str, workdir: Path, table: str) -> float:
    """COPY the rows nearrec loaded into `table` (internal ids) into a new table with the same columns,
    indexes and foreign keys: what the schema itself costs any loader. Returns seconds."""
    columns = {
        "items": "external_id, title, text, attributes, active, content_hash",
        "interactions": "user_id, item_id, type, value, occurred_at, event_id",
    }[table]
    dump = workdir / f"{table}_internal.csv"
    copy = sql.Identifier(f"bench_schema_{table}")
    cols = sql.SQL(columns)
    with psycopg.connect(conninfo) as conn:
        with (
            conn.cursor() as cur,
            open(dump, "wb") as f,
            cur.copy(
                sql.SQL("COPY (SELECT {} FROM {} ORDER BY id) TO STDOUT (FORMAT csv)").format(
                    cols, sql.Identifier(table)
                )
            ) as cp,
        ):
            for block in cp:
                f.write(block)
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(copy, sql.Identifier(table)))
        if table == "interactions":
            conn.execute(
                sql.SQL(
                    "ALTER TABLE {} ADD FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,"
                    " ADD FOREIGN KEY (item_id) REFERENCES items (id) ON DELETE CASCADE"
                ).format(copy)
            )
        conn.commit()
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(copy, cols)) as cp,
            open(dump, "rb") as f,
        ):
            while block := f.read(1 << 20):
                cp.write(block)
        conn.commit()
        return time.perf_counter() - started


def count_rows(conninfo: str, table: str) -> int:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        return int(row[0]) if row else 0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--interaction-items", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=None, help="default: NEARREC_INGEST_BATCH_SIZE")
    parser.add_argument("--seed", type=int, default=7)
    a = parser.parse_args()
    if a.interaction_items > a.items:
        parser.error("--interaction-items must not exceed --items")
    server = os.environ.get("NEARREC_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    extra = ["--batch-size", str(a.batch_size)] if a.batch_size else []
    rng = random.Random(a.seed)

    with (
        tempfile.TemporaryDirectory(prefix="nearrec-bench-") as tmp,
        scratch_database(server) as (url, conninfo),
    ):
        work = Path(tmp)
        items_csv, inter_csv = work / "items.csv", work / "interactions.csv"
        print(f"generating {a.items:,} items and {a.interactions:,} interactions in {work} ...", flush=True)
        generate_items(items_csv, a.items, rng)
        generate_interactions(inter_csv, a.interactions, a.users, a.interaction_items, rng)
        os.environ["NEARREC_DATABASE_URL"] = url
        migrate.upgrade(url)
        rss_before = peak_rss_mb()

        raw_items = raw_copy(
            conninfo,
            sql.SQL(
                "CREATE TABLE bench_raw_items (id text, title text, description text, category text,"
                " price double precision, in_stock boolean, tags text)"
            ),
            sql.SQL("COPY bench_raw_items FROM STDIN (FORMAT csv, HEADER true)"),
            items_csv,
        )
        ingest_items = nearrec_ingest(["items", str(items_csv), "--list-columns", "tags", *extra])
        reingest_items = nearrec_ingest(["items", str(items_csv), "--list-columns", "tags", *extra])

        raw_inter = raw_copy(
            conninfo,
            sql.SQL(
                "CREATE TABLE bench_raw_interactions (user_id text, item_id text, type text,"
                " value double precision, timestamp bigint, event_id text)"
            ),
            sql.SQL("COPY bench_raw_interactions FROM STDIN (FORMAT csv, HEADER true)"),
            inter_csv,
        )
        ingest_inter = nearrec_ingest(["interactions", str(inter_csv), *extra])
        rss_peak = peak_rss_mb()
        for table, expected in (("items", a.items), ("interactions", a.interactions)):
            if (found := count_rows(conninfo, table)) != expected:
                raise SystemExit(f"expected {expected:,} {table} in the database, found {found:,}")
        schema_items = schema_copy(conninfo, work, "items")
        schema_inter = schema_copy(conninfo, work, "interactions")

    def rate(rows: int, seconds: float) -> float:
        return rows / seconds

    print()
    print(f"{'phase':<44}{'rows':>11}{'seconds':>9}{'rows/s':>12}")
    rows_table = [
        ("items: raw COPY, bare table", a.items, raw_items),
        ("items: raw COPY, items schema", a.items, schema_items),
        ("items: nearrec ingest (insert)", a.items, ingest_items),
        ("items: nearrec ingest (identical re-run)", a.items, reingest_items),
        ("interactions: raw COPY, bare table", a.interactions, raw_inter),
        ("interactions: raw COPY, interactions schema", a.interactions, schema_inter),
        ("interactions: nearrec ingest", a.interactions, ingest_inter),
    ]
    for label, rows, seconds in rows_table:
        print(f"{label:<44}{rows:>11,}{seconds:>9.2f}{rate(rows, seconds):>12,.0f}")
    print()
    print(f"items        nearrec / raw COPY (bare table)   = {raw_items / ingest_items:.3f}   target >= 0.3")
    print(f"items        nearrec / raw COPY (items schema) = {schema_items / ingest_items:.3f}")
    print(f"interactions nearrec / raw COPY (bare table)   = {raw_inter / ingest_inter:.3f}   target >= 0.5")
    print(f"interactions nearrec / raw COPY (same schema)  = {schema_inter / ingest_inter:.3f}")
    print(f"peak RSS {rss_peak:.0f} MB (before ingesting: {rss_before:.0f} MB)   target < 500 MB")


if __name__ == "__main__":
    main()
