"""Ingestion throughput against COPY, what each part of the interactions schema costs, and memory.

Generates an item catalog (default 100,000 items with ~40-word descriptions) and an interaction log
(default 1,000,000 rows over 10,000 users and 50,000 of those items) as CSV in a temporary directory, then
in the same run and on the same server prints rows/s and the ratio to its baseline for:

1. COPY of the interactions file into a bare table (no index, no constraint): the baseline;
2. COPY of the same rows (internal ids, rows sorted as the loader writes them) into variants of the
   interactions table, adding one index / key / foreign key at a time: what each costs;
3. COPY into the final interactions schema (ratio to bare COPY; target >= 0.1);
4. ``nearrec ingest interactions`` (ratio to the COPY into its own schema, target >= 0.8, and to bare
   COPY, target >= 0.06);
5. ``nearrec ingest items`` (ratio to a COPY into the items schema, target >= 0.6, and to that COPY plus a
   COPY of the outbox rows the load owes, one per new item) and its identical re-run;
6. peak RSS (target < 500 MB).

``--scale 10000000`` adds a load of that many generated interactions into the same database and prints the
time and RSS at every tenth of it: time should grow linearly and memory stay flat.

Runs on a scratch database that it creates and drops, on the server of ``NEARREC_DATABASE_URL`` (default
the local server ``postgresql://postgres@127.0.0.1:5432``)::

    .venv/bin/python bench/ingest.py [--interactions 1000000] [--items 100000] [--scale 10000000]
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

from nearrec import runtime  # noqa: E402, F401  (imported now, with the command: import time is not ingestion)
from nearrec.cli import ingest_cmd  # noqa: E402, F401
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


def generate_interactions(
    path: Path, n: int, users: int, items: int, rng: random.Random, prefix: str = "e"
) -> None:
    start = 1_600_000_000
    with open(path, "w", encoding="utf-8") as out:
        out.write("user_id,item_id,type,value,timestamp,event_id\n")
        for k in range(n):
            kind = rng.choice(TYPES)
            value = str(rng.randint(1, 5)) if kind == "rating" else ""
            out.write(
                f"u{rng.randrange(users)},i{rng.randrange(items)},{kind},{value},{start + 17 * k},{prefix}{k}\n"
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


def raw_copy(
    conninfo: str, table_ddl: sql.SQL | sql.Composed, copy: sql.SQL | sql.Composed, path: Path
) -> float:
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


BARE_TABLES = {
    "items": "id text, title text, description text, category text, price double precision,"
    " in_stock boolean, tags text",
    "interactions": "user_id text, item_id text, type text, value double precision, timestamp bigint,"
    " event_id text",
}


def bare_copy(conninfo: str, kind: str, path: Path) -> float:
    """Seconds to COPY the generated file into a new table with no index and no key (the baseline)."""
    name = sql.Identifier(f"bench_raw_{kind}")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
    return raw_copy(
        conninfo,
        sql.SQL("CREATE TABLE {} ({})").format(name, sql.SQL(BARE_TABLES[kind])),
        sql.SQL("COPY {} FROM STDIN (FORMAT csv, HEADER true)").format(name),
        path,
    )


def nearrec_ingest(args: list[str]) -> float:
    started = time.perf_counter()
    cli.main(["ingest", *args, "--quiet", "--json"], prog_name="nearrec", standalone_mode=False)
    return time.perf_counter() - started


def dump_loaded(conninfo: str, workdir: Path, table: str) -> Path:
    """The rows nearrec stored in ``table`` (internal ids), in the order it wrote them, as CSV."""
    columns = sql.SQL(SCHEMA_COLUMNS[table])
    dump = workdir / f"{table}_internal.csv"
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur, open(dump, "wb") as f:
        statement = sql.SQL("COPY (SELECT {} FROM {} ORDER BY id) TO STDOUT (FORMAT csv)")
        with cur.copy(statement.format(columns, sql.Identifier(table))) as cp:
            for block in cp:
                f.write(block)
    return dump


SCHEMA_COLUMNS = {
    "items": "external_id, title, text, attributes, active, content_hash",
    "interactions": "user_id, item_id, type, value, occurred_at, event_id, event_key",
}

# Each variant adds one thing to the previous one (the last two are alternatives to the final schema).
VARIANTS: list[tuple[str, list[str]]] = [
    ("no index, no key", []),
    ("+ primary key (id)", ["ALTER TABLE bench_variant ADD PRIMARY KEY (id)"]),
    ("+ (user_id, occurred_at) index", ["CREATE INDEX ON bench_variant (user_id, occurred_at)"]),
    ("+ item_id index", ["CREATE INDEX ON bench_variant (item_id)"]),
    ("+ BRIN (occurred_at)", ["CREATE INDEX ON bench_variant USING brin (occurred_at)"]),
    ("+ unique event_key (uuid) = final schema", ["CREATE UNIQUE INDEX ON bench_variant (event_key)"]),
    ("  final, but a b-tree on occurred_at", ["DROP INDEX bench_variant_occurred_at_idx", "CREATE INDEX ON bench_variant (occurred_at)"]),
    ("  final + unique event_id (text) instead", ["DROP INDEX bench_variant_event_key_idx", "CREATE UNIQUE INDEX ON bench_variant (event_id)"]),
    ("  final + the two foreign keys", [
        "DROP INDEX bench_variant_event_id_idx", "CREATE UNIQUE INDEX ON bench_variant (event_key)",
        "ALTER TABLE bench_variant ADD FOREIGN KEY (user_id) REFERENCES users (id),"
        " ADD FOREIGN KEY (item_id) REFERENCES items (id)",
    ]),
]  # fmt: skip


def copy_into(conninfo: str, table: str, like: str, ddl: list[str], columns: str, dump: Path) -> float:
    """Seconds to COPY ``dump`` into a new table shaped like ``like`` (columns only) plus ``ddl``."""
    name = sql.Identifier(table)
    with psycopg.connect(conninfo) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
        conn.execute(
            sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING IDENTITY)").format(
                name, sql.Identifier(like)
            )
        )
        for statement in ddl:  # constants of this file
            conn.execute(sql.SQL(statement))  # type: ignore[arg-type]
        conn.commit()
        conn.execute("CHECKPOINT")
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(name, sql.SQL(columns))) as cp,
            open(dump, "rb") as f,
        ):
            while block := f.read(1 << 20):
                cp.write(block)
        conn.commit()
        return time.perf_counter() - started


def schema_costs(conninfo: str, dump: Path) -> list[tuple[str, float]]:
    """COPY the loaded interactions into each variant in turn (each adds to the previous one's DDL)."""
    out: list[tuple[str, float]] = []
    ddl: list[str] = []
    for label, extra in VARIANTS:
        ddl = ddl + extra
        seconds = copy_into(
            conninfo, "bench_variant", "interactions", ddl, SCHEMA_COLUMNS["interactions"], dump
        )
        out.append((label, seconds))
    return out


def final_schema_copy(conninfo: str, table: str, dump: Path) -> float:
    """COPY the loaded rows into a copy of ``table`` with all its indexes and keys."""
    name = sql.Identifier(f"bench_schema_{table}")
    with psycopg.connect(conninfo) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(name, sql.Identifier(table)))
        conn.commit()
        conn.execute("CHECKPOINT")
        started = time.perf_counter()
        columns = sql.SQL(SCHEMA_COLUMNS[table])
        with (
            conn.cursor() as cur,
            cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(name, columns)) as cp,
            open(dump, "rb") as f,
        ):
            while block := f.read(1 << 20):
                cp.write(block)
        conn.commit()
        return time.perf_counter() - started


def outbox_copy(conninfo: str, workdir: Path, n: int) -> float:
    """Seconds to COPY ``n`` outbox rows (``item``, id, ``upsert``) into a copy of the outbox table: the
    vector work a load of ``n`` new items must write besides the items themselves."""
    rows = workdir / "outbox.csv"
    with open(rows, "w", encoding="utf-8") as out:
        out.writelines(f"item,{i},upsert\n" for i in range(1, n + 1))
    with psycopg.connect(conninfo) as conn:
        conn.execute("CREATE TABLE bench_outbox (LIKE sync_outbox INCLUDING ALL)")
        conn.commit()
        conn.execute("CHECKPOINT")
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy("COPY bench_outbox (entity, entity_id, op) FROM STDIN (FORMAT csv)") as cp,
            open(rows, "rb") as f,
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


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def scale_run(url: str, work: Path, n: int, users: int, items: int, rng: random.Random) -> None:
    """Load ``n`` generated interactions (new event ids) and print time and RSS at every tenth."""
    from sqlalchemy import create_engine

    from nearrec.config import Settings
    from nearrec.ingest.loader import LoadPlan, load
    from nearrec.ingest.options import interaction_options

    path = work / "scale.csv"
    print(f"\ngenerating {n:,} interactions for the scale run ...", flush=True)
    generate_interactions(path, n, users, items, rng, prefix="s")
    settings = Settings()
    plan = LoadPlan(
        "interactions", [path], interaction_options(settings), batch_size=settings.ingest_batch_size
    )
    marks: list[tuple[float, float, float]] = []
    started = time.perf_counter()

    def progress(fraction: float) -> None:
        if fraction >= (len(marks) + 1) / 10:
            marks.append((fraction, time.perf_counter() - started, rss_mb()))

    engine = create_engine(url)
    try:
        summary = load(engine, plan, on_progress=progress)
    finally:
        engine.dispose()
    total = time.perf_counter() - started
    print(f"{'fraction':>9}{'rows (est.)':>14}{'seconds':>10}{'s per 10%':>11}{'RSS MB':>9}")
    last = 0.0
    for fraction, seconds, rss in marks:
        print(f"{fraction:>9.2f}{fraction * n:>14,.0f}{seconds:>10.1f}{seconds - last:>11.1f}{rss:>9.0f}")
        last = seconds
    print(f"scale run: {summary.inserted:,} rows inserted in {total:.1f} s = {n / total:,.0f} rows/s;"
          f" peak RSS {peak_rss_mb():.0f} MB")  # fmt: skip


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
    parser.add_argument(
        "--scale", type=int, default=0, help="also load this many interactions (e.g. 10000000)"
    )
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

        # Each figure is measured right next to the one it is compared with (the machine may be shared:
        # its load changes over a run), and the bare COPY of interactions twice, around the others.
        raw_items = bare_copy(conninfo, "items", items_csv)
        ingest_items = nearrec_ingest(["items", str(items_csv), "--list-columns", "tags", *extra])
        schema_items = final_schema_copy(conninfo, "items", dump_loaded(conninfo, work, "items"))
        outbox_items = outbox_copy(conninfo, work, a.items)
        reingest_items = nearrec_ingest(["items", str(items_csv), "--list-columns", "tags", *extra])

        raw_inter_1 = bare_copy(conninfo, "interactions", inter_csv)
        ingest_inter = nearrec_ingest(["interactions", str(inter_csv), *extra])
        inter_dump = dump_loaded(conninfo, work, "interactions")
        schema_inter = final_schema_copy(conninfo, "interactions", inter_dump)
        raw_inter_2 = bare_copy(conninfo, "interactions", inter_csv)
        raw_inter = (raw_inter_1 + raw_inter_2) / 2
        reingest_inter = nearrec_ingest(["interactions", str(inter_csv), *extra])
        rss_peak = peak_rss_mb()
        for table, expected in (("items", a.items), ("interactions", a.interactions)):
            if (found := count_rows(conninfo, table)) != expected:
                raise SystemExit(f"expected {expected:,} {table} in the database, found {found:,}")
        costs = schema_costs(conninfo, inter_dump)
        if a.scale:
            scale_run(url, work, a.scale, a.users * 10, a.interaction_items, rng)

    n_i, n_e = a.interactions, a.items
    print()
    print(f"{'what (one run)':<58}{'rows':>11}{'seconds':>9}{'rows/s':>12}{'ratio':>8}")

    def line(label: str, rows: int, seconds: float, ratio: float | None = None, note: str = "") -> None:
        shown = f"{ratio:>8.3f}" if ratio is not None else " " * 8
        print(f"{label:<58}{rows:>11,}{seconds:>9.2f}{rows / seconds:>12,.0f}{shown}  {note}")

    line("interactions: COPY into a bare table", n_i, raw_inter, 1.0,
         f"baseline (mean of {raw_inter_1:.2f} s and {raw_inter_2:.2f} s)")  # fmt: skip
    for label, seconds in costs:
        line(f"  COPY into: {label}", n_i, seconds, raw_inter / seconds, "of bare COPY")
    line("interactions: COPY into the final schema", n_i, schema_inter, raw_inter / schema_inter,
         "of bare COPY (target >= 0.1)")  # fmt: skip
    line("nearrec ingest interactions", n_i, ingest_inter, schema_inter / ingest_inter,
         "of COPY into its schema (target >= 0.8)")  # fmt: skip
    line("nearrec ingest interactions (vs bare COPY)", n_i, ingest_inter, raw_inter / ingest_inter,
         "of bare COPY (target >= 0.06)")  # fmt: skip
    line("nearrec ingest interactions (identical re-run)", n_i, reingest_inter, raw_inter / reingest_inter,
         "of bare COPY; inserts nothing")  # fmt: skip
    line("items: COPY into a bare table", n_e, raw_items, 1.0, "baseline")
    line("items: COPY into the items schema", n_e, schema_items, raw_items / schema_items, "of bare COPY")
    line("items: + COPY of the outbox rows they owe", n_e, schema_items + outbox_items,
         raw_items / (schema_items + outbox_items), f"of bare COPY (outbox alone {outbox_items:.2f} s)")  # fmt: skip
    line("nearrec ingest items", n_e, ingest_items, schema_items / ingest_items,
         "of COPY into the items schema (target >= 0.6)")  # fmt: skip
    line("nearrec ingest items (vs items + outbox COPY)", n_e, ingest_items,
         (schema_items + outbox_items) / ingest_items, "of COPY into the items and outbox schemas")  # fmt: skip
    line("nearrec ingest items (vs bare COPY)", n_e, ingest_items, raw_items / ingest_items, "of bare COPY")
    line("nearrec ingest items (identical re-run)", n_e, reingest_items, schema_items / reingest_items,
         "of COPY into the items schema")  # fmt: skip
    print(f"peak RSS {rss_peak:.0f} MB (before ingesting: {rss_before:.0f} MB)   target < 500 MB")


if __name__ == "__main__":
    main()
