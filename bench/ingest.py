"""Ingestion throughput against COPY, what each part of the interactions schema costs, and memory.

Generates an item catalog (default 100,000 items with ~40-word descriptions) and an interaction log
(default 1,000,000 rows over 10,000 users and 50,000 of those items, each with an event id) as CSV in a
temporary directory, then in the same run and on the same server prints rows/s and the ratio to its
baseline for:

1. COPY of the interactions file into a bare table (no index, no constraint): the baseline, measured three
   times (before, between and after the others; their median);
2. COPY of the rows nearrec stored (internal ids, in the order it wrote them) into the final interactions
   schema: binary (as nearrec's loader sends them; target >= 0.1 of bare COPY), measured three times too
   (their median), and CSV;
3. ``nearrec ingest interactions`` (ratio to the binary COPY into its own schema, target >= 0.8, and to bare
   COPY, target >= 0.06) and its identical re-run;
4. ``nearrec ingest items`` (ratio to a COPY into the items schema, target >= 0.6) and its floor: the COPY
   of the items plus the COPY of the outbox rows the load must write (one per new item);
5. the same binary COPY into variants of the interactions table, one index or key at a time, and the
   alternatives (the rows in the file's order instead of the loader's, a primary key, no BRIN on id, one
   BRIN for both columns, a hash index on item_id, a cached id sequence, random event ids, rows without
   event ids, foreign keys): what each costs;
6. peak RSS (target < 500 MB).

``--repeat N`` times the items and interactions parts N times (emptying nearrec's tables in between) and
prints each run's table and the median of each targeted ratio. ``--scale 10000000`` adds a load of that many
generated interactions into the same database and prints the time, RSS and the server's work at every tenth of
it (:mod:`ingest_scale`): time should grow linearly and memory stay flat.

Runs on a scratch database that it creates and drops, on the server of ``NEARREC_DATABASE_URL`` (default
the local server ``postgresql://postgres@127.0.0.1:5432``). ``--lock FILE`` holds that lock (flock) for the
timed part only, after the files are generated::

    .venv/bin/python bench/ingest.py [--interactions 1000000] [--items 100000] [--scale 10000000] [--repeat 3] [--lock F]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_copy import (  # noqa: E402
    bare_copy,
    count_rows,
    dump_loaded,
    final_schema_copy,
    outbox_copy,
    schema_costs,
    scratch_database,
)
from ingest_scale import peak_rss_mb, scale_run  # noqa: E402
from nearrec import runtime  # noqa: E402, F401  (imported now, with the command: import time is not ingestion)
from nearrec.cli import ingest_cmd  # noqa: E402, F401
from nearrec.cli.main import cli  # noqa: E402
from nearrec.postgres import migrate  # noqa: E402
from nearrec.postgres.models import Base  # noqa: E402

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


def nearrec_ingest(args: list[str]) -> float:
    started = time.perf_counter()
    cli.main(["ingest", *args, "--quiet", "--json"], prog_name="nearrec", standalone_mode=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--interaction-items", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the loader's")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--scale", type=int, default=0, help="also load this many interactions (e.g. 10000000)"
    )
    parser.add_argument("--lock", help="hold this lock file (flock) for the timed part only")
    parser.add_argument(
        "--repeat", type=int, default=1, help="time the items and interactions parts this many times"
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
        scale_csv = work / "scale.csv"
        if a.scale:  # 10x the users, new event ids
            print(f"generating {a.scale:,} interactions for the scale run ...", flush=True)
            generate_interactions(scale_csv, a.scale, a.users * 10, a.interaction_items, rng, prefix="s")
        os.environ["NEARREC_DATABASE_URL"] = url
        migrate.upgrade(url)
        if a.lock:
            fcntl.flock(os.open(a.lock, os.O_RDWR | os.O_CREAT), fcntl.LOCK_EX)  # released at exit
        load_before = os.getloadavg()
        rss_before = peak_rss_mb()

        runs = []
        for run in range(a.repeat):
            if run:
                empty_tables(conninfo)
            runs.append(timed_run(conninfo, work, items_csv, inter_csv, a.items, extra))
            rss_peak = peak_rss_mb()
            for table, expected in (("items", a.items), ("interactions", a.interactions)):
                if (found := count_rows(conninfo, table)) != expected:
                    raise SystemExit(f"expected {expected:,} {table} in the database, found {found:,}")
        binary = dump_loaded(conninfo, work, "interactions", "binary")
        costs = schema_costs(conninfo, work, binary)
        load_after = os.getloadavg()
        if a.scale:
            print(f"\nscale run: loading {a.scale:,} more interactions ...", flush=True)
            scale_run(url, conninfo, scale_csv, a.scale)

    for run, f in enumerate(runs, 1):
        if len(runs) > 1:
            print(f"\nrun {run} of {len(runs)}", end="")
        report(f, costs if run == len(runs) else [], a.interactions, a.items)
    if len(runs) > 1:
        medians(runs)
    print(f"peak RSS {rss_peak:.0f} MB (before ingesting: {rss_before:.0f} MB)   target < 500 MB")
    print(f"load average (1, 5, 15 min): at start {_load(load_before)}, after the table {_load(load_after)}")


def timed_run(
    conninfo: str, work: Path, items_csv: Path, inter_csv: Path, n_items: int, extra: list[str]
) -> dict[str, float]:
    """The timed items and interactions parts, into an empty database; returns their seconds."""
    # Each figure is measured right next to the one it is compared with (the machine may be shared: its
    # load changes over a run).
    f: dict[str, float] = {}
    f["raw_items"] = bare_copy(conninfo, "items", items_csv)
    f["ingest_items"] = nearrec_ingest(["items", str(items_csv), "--list-columns", "tags", *extra])
    items_dump = dump_loaded(conninfo, work, "items", "csv")
    f["schema_items"] = final_schema_copy(conninfo, "items", items_dump, "csv")
    f["outbox_items"] = outbox_copy(conninfo, work, n_items)
    f["reingest_items"] = nearrec_ingest(["items", str(items_csv), "--list-columns", "tags", *extra])

    # bare COPY and the binary COPY into the final schema three times each, interleaved with the rest
    f["raw_1"] = bare_copy(conninfo, "interactions", inter_csv)
    f["ingest"] = nearrec_ingest(["interactions", str(inter_csv), *extra])
    binary = dump_loaded(conninfo, work, "interactions", "binary")
    f["schema_1"] = final_schema_copy(conninfo, "interactions", binary, "binary")
    f["raw_2"] = bare_copy(conninfo, "interactions", inter_csv)
    f["schema_2"] = final_schema_copy(conninfo, "interactions", binary, "binary")
    f["schema_csv"] = final_schema_copy(
        conninfo, "interactions", dump_loaded(conninfo, work, "interactions", "csv"), "csv"
    )
    f["raw_3"] = bare_copy(conninfo, "interactions", inter_csv)
    f["schema_3"] = final_schema_copy(conninfo, "interactions", binary, "binary")
    f["reingest"] = nearrec_ingest(["interactions", str(inter_csv), *extra])
    f["raw"] = statistics.median(f[f"raw_{k}"] for k in (1, 2, 3))
    f["schema"] = statistics.median(f[f"schema_{k}"] for k in (1, 2, 3))
    return f


def empty_tables(conninfo: str) -> None:
    """Empty nearrec's tables (ids restarted) for the next timed run."""
    names = sql.SQL(", ").join(sql.Identifier(t.name) for t in Base.metadata.sorted_tables)
    with psycopg.connect(conninfo) as conn:
        conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(names))


def medians(runs: list[dict[str, float]]) -> None:
    """The median over the runs of each ratio that has a target."""
    ratios = {
        "nearrec ingest items / COPY into the items schema (target >= 0.6)": [
            f["schema_items"] / f["ingest_items"] for f in runs
        ],
        "nearrec ingest items / its floor": [
            (f["schema_items"] + f["outbox_items"]) / f["ingest_items"] for f in runs
        ],
        "nearrec ingest interactions / binary COPY into its schema (target >= 0.8)": [
            f["schema"] / f["ingest"] for f in runs
        ],
        "nearrec ingest interactions / bare COPY (target >= 0.06)": [f["raw"] / f["ingest"] for f in runs],
        "interactions: COPY into the final schema / bare COPY (target >= 0.1)": [
            f["raw"] / f["schema"] for f in runs
        ],
    }
    print(f"\nmedian of {len(runs)} runs (each run's ratio in brackets)")
    for label, values in ratios.items():
        each = ", ".join(f"{x:.3f}" for x in values)
        print(f"  {label:<74}{statistics.median(values):>7.3f}  [{each}]")


def _each(f: dict[str, float], name: str) -> str:
    return ", ".join(f"{f[f'{name}_{k}']:.2f}" for k in (1, 2, 3))


def _load(averages: tuple[float, float, float]) -> str:
    return ", ".join(f"{x:.2f}" for x in averages)


def report(f: dict[str, float], costs: list[tuple[str, float]], n_i: int, n_e: int) -> None:
    raw = f["raw"]
    print()
    print(f"{'what (one run)':<58}{'rows':>11}{'seconds':>9}{'rows/s':>12}{'ratio':>8}")

    def line(label: str, rows: int, seconds: float, ratio: float | None = None, note: str = "") -> None:
        shown = f"{ratio:>8.3f}" if ratio is not None else " " * 8
        print(f"{label:<58}{rows:>11,}{seconds:>9.2f}{rows / seconds:>12,.0f}{shown}  {note}")

    line("interactions: COPY into a bare table", n_i, raw, 1.0,
         f"baseline (median of {_each(f, 'raw')} s)")  # fmt: skip
    line("interactions: COPY into the final schema (binary)", n_i, f["schema"], raw / f["schema"],
         f"of bare COPY (target >= 0.1; median of {_each(f, 'schema')} s)")  # fmt: skip
    line("interactions: COPY into the final schema (CSV)", n_i, f["schema_csv"], raw / f["schema_csv"],
         "of bare COPY")  # fmt: skip
    line("nearrec ingest interactions", n_i, f["ingest"], f["schema"] / f["ingest"],
         "of the binary COPY into its schema (target >= 0.8)")  # fmt: skip
    line("nearrec ingest interactions (vs bare COPY)", n_i, f["ingest"], raw / f["ingest"],
         "of bare COPY (target >= 0.06)")  # fmt: skip
    line("nearrec ingest interactions (identical re-run)", n_i, f["reingest"], raw / f["reingest"],
         "of bare COPY; inserts nothing")  # fmt: skip
    floor = f["schema_items"] + f["outbox_items"]
    line("items: COPY into a bare table", n_e, f["raw_items"], 1.0, "baseline")
    line("items: COPY into the items schema", n_e, f["schema_items"], f["raw_items"] / f["schema_items"],
         "of bare COPY")  # fmt: skip
    line("items: + COPY of the outbox rows they owe (the floor)", n_e, floor, f["schema_items"] / floor,
         f"of COPY into the items schema: the most a load can reach (outbox alone {f['outbox_items']:.2f} s)")  # fmt: skip
    line("nearrec ingest items", n_e, f["ingest_items"], f["schema_items"] / f["ingest_items"],
         "of COPY into the items schema (target >= 0.6)")  # fmt: skip
    line("nearrec ingest items (vs its floor)", n_e, f["ingest_items"], floor / f["ingest_items"],
         "of COPY into the items and outbox schemas")  # fmt: skip
    line("nearrec ingest items (vs bare COPY)", n_e, f["ingest_items"], f["raw_items"] / f["ingest_items"],
         "of bare COPY")  # fmt: skip
    line("nearrec ingest items (identical re-run)", n_e, f["reingest_items"],
         f["schema_items"] / f["reingest_items"], "of COPY into the items schema")  # fmt: skip
    if costs:
        print("\nwhat each part of the interactions table costs: binary COPY of the stored rows into")
    for label, seconds in costs:
        line(f"  {label}", n_i, seconds, raw / seconds, "of bare COPY")


if __name__ == "__main__":
    main()
