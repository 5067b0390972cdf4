"""The COPY baselines of bench/ingest.py: a scratch database, COPY of the generated files into bare tables, the
rows nearrec stored dumped back out (in the order it wrote them) and COPYed into copies of its tables, and
what each index and key of the interactions table costs."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql

from nearrec.postgres import scratch
from nearrec.postgres.engine import normalise_url
from nearrec.postgres.notify import libpq_conninfo

Format = Literal["csv", "binary"]

BARE_TABLES = {
    "items": "id text, title text, description text, category text, price double precision,"
    " in_stock boolean, tags text",
    "interactions": "user_id text, item_id text, type text, value double precision, timestamp bigint,"
    " event_id text",
}
# The columns nearrec's loaders write (for interactions: in the order of its binary COPY).
SCHEMA_COLUMNS = {
    "items": "external_id, title, text, attributes, active, content_hash",
    "interactions": "user_id, item_id, occurred_at, value, type, event_id, event_key",
}


@contextmanager
def scratch_database(server_url: str) -> Iterator[tuple[str, str]]:
    """A new database on the server, dropped afterwards; yields (SQLAlchemy URL, psycopg URL)."""
    name = f"nearrec_bench_{os.getpid()}"
    with scratch.scratch_database(normalise_url(server_url), name, migrate=False) as url:
        yield url, libpq_conninfo(url)


def _copy_file(conn: psycopg.Connection[tuple[object, ...]], copy: sql.Composable, path: Path) -> float:
    """Seconds to stream the file's bytes into COPY and commit."""
    conn.execute("CHECKPOINT")  # no checkpoint started by an earlier step lands in this one
    started = time.perf_counter()
    with conn.cursor() as cur, cur.copy(copy) as cp, open(path, "rb") as f:
        while block := f.read(1 << 20):
            cp.write(block)
    conn.commit()
    return time.perf_counter() - started


def bare_copy(conninfo: str, kind: str, path: Path) -> float:
    """Seconds to COPY the generated CSV file into a new table with no index and no key (the baseline)."""
    name = sql.Identifier(f"bench_raw_{kind}")
    with psycopg.connect(conninfo) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
        conn.execute(sql.SQL("CREATE TABLE {} ({})").format(name, sql.SQL(BARE_TABLES[kind])))
        conn.commit()
        return _copy_file(conn, sql.SQL("COPY {} FROM STDIN (FORMAT csv, HEADER true)").format(name), path)


def dump_loaded(
    conninfo: str,
    workdir: Path,
    table: str,
    fmt: Format,
    select: str | None = None,
    tag: str = "",
    order: str = "id",
) -> Path:
    """The rows nearrec stored in ``table`` (internal ids), in the order it wrote them, as COPY data;
    ``select`` replaces the column list (e.g. to derive another key), ``order`` the order (a constant)."""
    columns = sql.SQL(select or SCHEMA_COLUMNS[table])
    dump = workdir / f"{table}_stored{tag}.{fmt}"
    statement = sql.SQL("COPY (SELECT {} FROM {} ORDER BY {}) TO STDOUT (FORMAT {})").format(
        columns, sql.Identifier(table), sql.SQL(order), sql.SQL(fmt)
    )
    with (
        psycopg.connect(conninfo) as conn,
        conn.cursor() as cur,
        open(dump, "wb") as f,
        cur.copy(statement) as cp,
    ):
        for block in cp:
            f.write(block)
    return dump


def final_schema_copy(conninfo: str, table: str, dump: Path, fmt: Format) -> float:
    """Seconds to COPY the dumped rows into a new copy of ``table`` with all its indexes and keys."""
    name = sql.Identifier(f"bench_schema_{table}")
    with psycopg.connect(conninfo) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(name, sql.Identifier(table)))
        conn.commit()
        copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(
            name, sql.SQL(SCHEMA_COLUMNS[table]), sql.SQL(fmt)
        )
        return _copy_file(conn, copy, dump)


def outbox_copy(conninfo: str, workdir: Path, n: int) -> float:
    """Seconds to COPY ``n`` outbox rows (``item``, id, ``upsert``) into a copy of the outbox table: the
    vector work a load of ``n`` new items must write besides the items themselves."""
    rows = workdir / "outbox.csv"
    with open(rows, "w", encoding="utf-8") as out:
        out.writelines(f"item,{i},upsert\n" for i in range(1, n + 1))
    with psycopg.connect(conninfo) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_outbox")
        conn.execute("CREATE TABLE bench_outbox (LIKE sync_outbox INCLUDING ALL)")
        conn.commit()
        return _copy_file(
            conn, sql.SQL("COPY bench_outbox (entity, entity_id, op) FROM STDIN (FORMAT csv)"), rows
        )


_T = "bench_variant"
_UT = f"CREATE INDEX ON {_T} (user_id, occurred_at)"
_ITEM = f"CREATE INDEX ON {_T} (item_id)"
_BRIN = [f"CREATE INDEX ON {_T} USING brin (occurred_at)", f"CREATE INDEX ON {_T} USING brin (id)"]
_BRIN1 = [f"CREATE INDEX ON {_T} USING brin (occurred_at, id)"]  # one index, one insertion call per row
_IDENTITY = [
    f"CREATE UNIQUE INDEX ON {_T} (event_id) WHERE event_id IS NOT NULL",
    f"CREATE UNIQUE INDEX ON {_T} (user_id, event_key) WHERE event_id IS NULL",
]
_FINAL = [_UT, _ITEM, *_BRIN, *_IDENTITY]
_PK = f"ALTER TABLE {_T} ADD PRIMARY KEY (id)"
_CACHE = f"ALTER TABLE {_T} ALTER COLUMN id SET CACHE 1000"
# (label, DDL after creating the columns, which dump: "" = the rows as stored, "time" = the same rows in time
# order (the file's order, not the loader's), "random" = event ids in random order, "content" = no event
# ids: a 128-bit content key per row)
VARIANTS: list[tuple[str, list[str], str]] = [
    ("no index, no key", [], ""),
    ("+ (user_id, occurred_at) index", [_UT], ""),
    ("+ item_id index", [_UT, _ITEM], ""),
    ("+ BRIN (occurred_at), BRIN (id)", [_UT, _ITEM, *_BRIN], ""),
    ("+ unique event id / (user, content key) = final", _FINAL, ""),
    ("  final, rows in the file's order (not the loader's)", _FINAL, "time"),
    ("  the guarantees' minimum: final without the two BRINs", [_UT, _ITEM, *_IDENTITY], ""),
    ("  final + primary key (id)", [*_FINAL, _PK], ""),
    ("  final without BRIN (id)", [_UT, _ITEM, _BRIN[0], *_IDENTITY], ""),
    ("  final, one BRIN (occurred_at, id)", [_UT, _ITEM, *_BRIN1, *_IDENTITY], ""),
    ("  final, item_id hash index", [_UT, f"CREATE INDEX ON {_T} USING hash (item_id)", *_BRIN, *_IDENTITY], ""),
    ("  final, id sequence cache 1000", [*_FINAL, _CACHE], ""),
    ("  final, event ids in random order (uuid text)", _FINAL, "random"),
    ("  final, no event ids: (user, 128-bit content key)", _FINAL, "content"),
    ("  final + the two foreign keys", [*_FINAL, f"ALTER TABLE {_T} ADD FOREIGN KEY (user_id) REFERENCES users (id),"
                                        " ADD FOREIGN KEY (item_id) REFERENCES items (id)"], ""),
]  # fmt: skip
_COLUMNS = SCHEMA_COLUMNS["interactions"]
_DUMPS = {  # (columns, order)
    "time": (_COLUMNS, "occurred_at, id"),
    "random": ("user_id, item_id, occurred_at, value, type, md5(event_id)::uuid::text, event_key", "id"),
    "content": ("user_id, item_id, occurred_at, value, type, NULL::text, md5(event_id)::uuid", "id"),
}


def schema_costs(conninfo: str, workdir: Path, dump: Path) -> list[tuple[str, float]]:
    """Binary COPY of the stored interactions into each variant of the table (columns as
    ``interactions``)."""
    dumps = {"": dump} | {
        tag: dump_loaded(conninfo, workdir, "interactions", "binary", select, f"_{tag}", order)
        for tag, (select, order) in _DUMPS.items()
    }
    out: list[tuple[str, float]] = []
    for label, ddl, tag in VARIANTS:
        with psycopg.connect(conninfo) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {_T}")
            conn.execute(f"CREATE TABLE {_T} (LIKE interactions INCLUDING DEFAULTS INCLUDING IDENTITY)")
            for statement in ddl:  # constants of this file
                conn.execute(statement)  # type: ignore[call-overload]
            conn.commit()
            copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
                sql.Identifier(_T), sql.SQL(_COLUMNS)
            )
            out.append((label, _copy_file(conn, copy, dumps[tag])))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {_T}")
    return out


def count_rows(conninfo: str, table: str) -> int:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        return int(row[0]) if row else 0
