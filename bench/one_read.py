"""What the one-read recommendation saves: the same requests answered from the hits' payload (one database
round trip) and with the result-row read forced (the fallback's two round trips: what every request did
before), alternated query by query so both see the same load and caches.

    .venv/bin/python bench/one_read.py [--items 20000] [--users 500] [--queries 600] [--methods text,cf,hybrid]
                                       [--lock /work/bench.lock]

Builds a scratch Postgres database and an embedded store as bench/query.py does (random vectors, exact
search below the index threshold), trains the untuned ridge model, then per method: a warm-up pass, then
p50 of each variant and the p50 of the paired difference (row read minus one read), with the ratio of the
two p50s. ``--lock`` holds the machine's benchmark lock for the timed part.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from pydantic import SecretStr  # noqa: E402

import nearrec.query.service as service_module  # noqa: E402
from nearrec.config import Settings  # noqa: E402
from nearrec.postgres import migrate  # noqa: E402
from nearrec.postgres.engine import make_engine, read_sessions  # noqa: E402
from nearrec.query import results  # noqa: E402
from nearrec.query.service import QueryService  # noqa: E402
from nearrec.vectors.edge import EdgeVectorStore  # noqa: E402
from query import train_model  # noqa: E402
from query_data import CATEGORIES, MODEL, fill_postgres, fill_store, scratch_database  # noqa: E402


def with_row_read(
    session: Any, hits: Any, fields: Any, explainer: Any, pending_excluded: bool = False
) -> Any:
    """``finish`` as if the pending items had not been read: the rows of the answer from Postgres."""
    return results.finish(session, hits, fields, explainer, False)


def measure(service: QueryService, names: list[str], queries: list[tuple[int, int]], method: str) -> None:
    variants = ((results.finish, []), (with_row_read, []))
    for n, (u, cat) in enumerate([*queries[:50], *queries]):  # 50 warm-up queries (caches), not counted
        for finish, out in variants:
            service_module.finish = finish  # type: ignore[assignment]
            t = time.perf_counter()
            service.recommend(names[u], k=10, filter={"category": CATEGORIES[cat]}, method=method)
            if n >= 50:
                out.append((time.perf_counter() - t) * 1000)
    service_module.finish = results.finish
    one, two = (statistics.median(out) for _, out in variants)
    diff = statistics.median(b - a for a, b in zip(variants[0][1], variants[1][1], strict=True))
    print(
        f"{method:7} one read p50 {one:6.2f} ms   with the row read {two:6.2f} ms   paired difference p50 "
        f"{diff:5.2f} ms   one read / row read {one / two:.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--users", type=int, default=500)
    ap.add_argument("--queries", type=int, default=600)
    ap.add_argument("--methods", default="text,cf,hybrid")
    ap.add_argument("--lock", help="Hold this lock file (flock) for the timed part")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    url, drop = scratch_database()
    tmp = Path(tempfile.mkdtemp(prefix="nearrec-bench-one-read-"))
    try:
        migrate.upgrade(url)
        settings = Settings(  # type: ignore[call-arg]
            database_url=SecretStr(url), data_dir=tmp, embedding_model=MODEL, _env_file=None,
            index_build_min_points=10**9,
        )  # fmt: skip
        catalog = fill_postgres(url, args.items, args.users, 0, args.seed)
        store = EdgeVectorStore(tmp / "vectors")
        fill_store(url, store, settings, catalog, args.seed, "random")
        train_model(url, store, settings, None, {})
        if args.lock:
            lock = os.open(args.lock, os.O_RDWR | os.O_CREAT)
            fcntl.flock(lock, fcntl.LOCK_EX)
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        service = QueryService(read_sessions(make_engine(url)), store, settings)
        rng = random.Random(args.seed)
        queries = [(rng.randrange(args.users), rng.randrange(len(CATEGORIES))) for _ in range(args.queries)]
        names = [catalog.user_name(u) for u in range(args.users)]
        for method in args.methods.split(","):
            measure(service, names, queries, method)
        store.close()
    finally:
        drop()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
