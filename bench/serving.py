"""Serving cost of the trained default (hybrid) against the text method, in-process and over HTTP.

    .venv/bin/python bench/serving.py [--data movielens|sequential] [--requests 400] [--budget 90]

Loads the data set as a catalog admin would (`nearrec db upgrade`, `ingest items`, `ingest interactions`,
`worker --once`, `train --budget`; a scratch database on NEARREC_DATABASE_URL's server, else 127.0.0.1:5432,
else an embedded Postgres; the embedded vector store in a temporary data dir), then times the same users with
`method=text` and with the default method, interleaved, first in-process (`QueryService.recommend`), then over
HTTP against `nearrec serve` (one closed-loop client); on MovieLens each also under a genre filter (where an
item-item model's sparse query walks its inverted index only if the collection was created with it). Prints
the model `train` chose, p50/p99 of each and the default/text ratio (target: at most 2x, in-process and over
HTTP). `sequential` is nearrec.model.synthetic's sequential log
(item-item wins there) with meaningless item texts; `movielens` needs ../shared/datasets/movielens-100k.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pydantic import SecretStr  # noqa: E402

from nearrec.config import Settings  # noqa: E402
from nearrec.model import synthetic  # noqa: E402
from query_data import pct, scratch_database  # noqa: E402
from query_http import serving  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MOVIELENS = REPO.parent / "shared" / "datasets" / "movielens-100k"
PORT = 18771
GENRES = '{"genres": {"in": ["Drama", "Comedy"]}}'


def sequential_files(folder: Path) -> tuple[list[str], Path, Path]:
    log = synthetic.sequential()
    items, events = folder / "items.csv", folder / "interactions.csv"
    with open(items, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "text"])
        w.writerows([i, f"item {i}", f"item number {i} of the catalog"] for i in range(log.n_items))
    with open(events, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp"])
        rows = zip(log.user_idx.tolist(), log.item_idx.tolist(), log.timestamps.tolist(), strict=True)
        w.writerows([u, i, 1_600_000_000 + int(t)] for u, i, t in rows)
    return [], items, events


def load(env: dict[str, str], data: str, folder: Path, budget: float) -> list[str]:
    """Load and train through the CLI; returns the user ids to query."""
    if data == "movielens":
        items, events = MOVIELENS / "items.csv", MOVIELENS / "interactions.csv"
        item_opts = ["--list-columns", "genres", "--list-sep", "|"]
        event_opts = ["--type", "rating"]
    else:
        _, items, events = sequential_files(folder)
        item_opts, event_opts = [], []
    steps = [
        ["db", "upgrade"],
        ["ingest", "items", str(items), *item_opts],
        ["ingest", "interactions", str(events), *event_opts],
        ["worker", "--once"],
        ["train", "--budget", str(budget)],
    ]
    for step in steps:
        mark = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "nearrec", *step], env=env, check=True, stdout=subprocess.DEVNULL
        )
        print(f"nearrec {' '.join(step[:2])}: {time.perf_counter() - mark:.1f}s", flush=True)
    with open(events, newline="") as f:
        return sorted({row["user_id"] for row in csv.DictReader(f)})


def in_process(settings: Settings, users: list[str], filter: str | None) -> dict[str, list[float]]:
    from nearrec.query.service import QueryService
    from nearrec.runtime import Runtime

    with Runtime(settings) as runtime:  # as `nearrec recommend` builds it
        service = QueryService(
            runtime.read_sessions, runtime.vector_store, runtime.settings, lambda: runtime.embedder
        )
        meta = service.cf_meta()
        if meta is not None:
            print(f"model: {meta.family} ({meta.vector}), text weight {meta.text_weight:g}", flush=True)

        def ask(user: str, method: str | None) -> None:
            service.recommend(user, k=10, method=method, filter=filter)

        for user in users[:20]:  # warm: model load, metadata, connections
            ask(user, None)
            ask(user, "text")
        return interleaved(users, ask)


def over_http(env: dict[str, str], users: list[str], filter: str | None) -> dict[str, list[float]]:
    import httpx

    with serving(env, PORT, "--no-sync-worker"), httpx.Client(base_url=f"http://127.0.0.1:{PORT}") as client:

        def ask(user: str, method: str | None) -> None:
            params: dict[str, str | int] = {"k": 10}
            if method is not None:
                params["method"] = method
            if filter is not None:
                params["filter"] = filter
            client.get(f"/v1/users/{user}/recommendations", params=params, timeout=30).raise_for_status()

        for user in users[:20]:
            ask(user, None)
            ask(user, "text")
        return interleaved(users, ask)


def interleaved(users: list[str], call: Callable[[str, str | None], object]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"default": [], "text": []}
    for user in users:
        for label, method in random.sample([("default", None), ("text", "text")], 2):
            mark = time.perf_counter()
            call(user, method)
            times[label].append(time.perf_counter() - mark)
    return times


def report(where: str, times: dict[str, list[float]]) -> float:
    d, t = times["default"], times["text"]
    ratio = pct(d, 50) / pct(t, 50)
    print(
        f"[{where}] default p50 {pct(d, 50) * 1000:.2f} ms p99 {pct(d, 99) * 1000:.2f} ms | "
        f"text p50 {pct(t, 50) * 1000:.2f} ms p99 {pct(t, 99) * 1000:.2f} ms | "
        f"default/text p50 {ratio:.2f}x (target <= 2x)",
        flush=True,
    )
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=["movielens", "sequential"], default="movielens")
    ap.add_argument("--requests", type=int, default=400, help="users timed per method and place")
    ap.add_argument("--budget", type=float, default=90.0)
    args = ap.parse_args()
    if args.data == "movielens" and not (MOVIELENS / "items.csv").is_file():
        sys.exit(f"MovieLens not found at {MOVIELENS}")
    url, drop = scratch_database()
    with tempfile.TemporaryDirectory(prefix="nearrec-serving-") as tmp:
        env = {**os.environ, "NEARREC_DATABASE_URL": url, "NEARREC_DATA_DIR": str(Path(tmp) / "data")}
        env.update({"NEARREC_LOG_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1"})
        env.pop("NEARREC_API_KEYS", None)
        env.pop("NEARREC_QDRANT_URL", None)
        try:
            users = load(env, args.data, Path(tmp), args.budget)
            users = random.Random(7).sample(users, min(args.requests, len(users)))
            settings = Settings(
                database_url=SecretStr(url),
                data_dir=Path(tmp) / "data",
                _env_file=None,  # type: ignore[call-arg]
            )
            cases = [("", None)] + ([(", genre filter", GENRES)] if args.data == "movielens" else [])
            summary = []
            for label, filter in cases:
                inside = report(f"in-process{label}", in_process(settings, users, filter))
                http = report(f"HTTP{label}", over_http(env, users, filter))
                summary.append(f"in-process{label} {inside:.2f}x, HTTP{label} {http:.2f}x")
            print(f"summary: {args.data} default/text p50: {'; '.join(summary)}")
        finally:
            drop()


if __name__ == "__main__":
    main()
