"""Sync throughput: items ingested and synced end to end by the worker vs raw ``SentenceTransformer.encode``.

In ONE run, ``--rounds`` times (default 5), alternating:

1. raw: ``SentenceTransformer.encode`` (torch, today's baseline) of exactly the documents the worker embeds
   (the texts ingest composes), with the same batch size, in this process;
2. end to end, in a fresh worker process that holds only its own backend (as ``nearrec worker`` does):
   ``nearrec ingest items`` (in-process) of the items into a fresh scratch Postgres database, then the sync
   worker (``SyncWorker.drain``, what ``nearrec worker --once`` runs) embeds them and upserts them into a
   fresh embedded Qdrant engine (qdrant-edge): the store is created, indexed and filled within the timed part
   (its setup, timed apart too, is a fixed cost: one disk flush per collection and payload index). The
   process loads and warms up its model before the clock starts.

Each round's ratio is its end-to-end rate over the rate of the mean of the raw encodes right before and right
after it (the load of a shared machine drifts); the run reports every round, the median ratio and the pooled
ratio (all raw time over all end-to-end time). A small catalog (the demo's 360 items, ~2 s of worker time)
is noisy round to round: the median over rounds, not one round, is the figure.

Then, unless ``--no-torch-worker``: one more end-to-end round with a torch worker, for its peak RSS (the
worker's target: no higher than with torch) and its rate. Peak RSS is the worker process's own (VmHWM: model
loaded, then ingest and sync). Last, the embedded store's upsert rate (points/s) for the same vectors.

Targets: ratio >= 0.85 with ``--backend torch`` (the model is the physical limit), >= 2 with a faster backend
(issue 16).

Texts: N (default 5,000) descriptions of ~40 words built from the MovieLens titles, years and genres in
../shared/datasets plus plain English words (generated, seeded); or, with ``--texts movielens|demo``, the
MovieLens-100k items file or the bundled demo catalog as they are.

    .venv/bin/python bench/sync.py [--texts generated|movielens|demo] [--items 5000] [--rounds 5]
        [--backend torch|onnx|onnx-int8] [--batch-size N] [--baseline-threads N] [--no-torch-worker]
        [--profile]

The raw encode runs with torch's default threads (one per core) and with 1 thread, and the faster of the two
counts (``--baseline-threads N``: only N): on a loaded machine, torch on every core waits for the slowest
core at each operator and can take several times as long as on one. ``--profile`` runs
the first round's worker under cProfile and prints its top functions. ONNX models are built once into
``--models`` (default: <tmp>/nearrec-bench-models) and reused by later runs.

Uses the Postgres server of ``NEARREC_DATABASE_URL`` (default 127.0.0.1:5432), in scratch databases that it
creates and drops.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
from sqlalchemy import select  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from nearrec.config import Settings  # noqa: E402
from nearrec.postgres import migrate, scratch  # noqa: E402
from nearrec.postgres.engine import make_engine, normalise_url, session_factory  # noqa: E402
from nearrec.postgres.models import Item  # noqa: E402

MOVIELENS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "movielens-100k" / "items.csv"
DEMO = Path(__file__).resolve().parents[1] / "platform" / "nearrec" / "demo" / "items.csv"
REAL_CATALOGS = {"movielens": (MOVIELENS, "genres"), "demo": (DEMO, "tags")}
VOCABULARY = (
    "a story of love and loss in a small town where an old friend returns after many years to find the family "
    "house empty and the river rising while a young detective searches for the truth about a missing child "
    "during a cold winter night city lights music war ship ocean island mountain journey home secret letter "
    "brother sister mother father king queen soldier doctor teacher artist thief hero villain dream memory "
    "fire storm train road desert forest garden school church hospital prison court newspaper radio camera "
    "money gold diamond murder mystery comedy wedding party dance song laughter tears hope fear courage"
)


def documents(n: int, seed: int = 7) -> list[dict[str, str]]:
    """N item rows (id, title, description, year, genres) of ~40 words each."""
    rng = random.Random(seed)
    vocabulary = VOCABULARY.split(" ")
    with open(MOVIELENS, encoding="utf-8") as f:
        movies = list(csv.DictReader(f))
    rows = []
    for k in range(n):
        m = movies[k % len(movies)]
        genres = m["genres"].replace("|", ", ")
        words = " ".join(rng.choices(vocabulary, k=rng.randint(28, 38)))
        rows.append(
            {
                "id": f"m{k}",
                "title": m["title"],
                "description": f"{m['title']} ({m['year']}), {genres}: {words}.",
                "year": m["year"],
                "genres": m["genres"],
            }
        )
    return rows


@contextmanager
def scratch_database(server_url: str, tag: str = "") -> Iterator[str]:
    """A new database on the server (not migrated), dropped afterwards; yields its URL."""
    name = f"nearrec_bench_sync_{os.getpid()}{tag}"
    with scratch.scratch_database(normalise_url(server_url), name, migrate=False) as url:
        yield url


def ingest(path: Path, sessions: sessionmaker[Session], list_columns: str = "genres") -> None:
    """``nearrec ingest items`` in-process (the catalog service directly if the command is missing)."""
    from nearrec.cli.main import cli

    if "ingest" in cli.commands:
        cli.main(
            ["ingest", "items", str(path), "--list-columns", list_columns, "--quiet"],
            prog_name="nearrec",
            standalone_mode=False,
        )
        return
    from nearrec.ingest.readers import open_reader
    from nearrec.ingest.records import ItemOptions
    from nearrec.ingest.service import ingest_items
    from nearrec.postgres.engine import transaction

    options = ItemOptions(list_columns=frozenset(list_columns.split(",")), infer_types=True)
    with open_reader(path) as reader, transaction(sessions) as session:
        ingest_items(session, reader, options, source=str(path))


def peak_rss_mb() -> float:
    """This process's peak RSS (Linux VmHWM), 0 where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


# --- the worker process ----------------------------------------------------------------------------------


def worker_round(job: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: load and warm up the backend, then time ingest + ``SyncWorker.drain``."""
    from nearrec.embedding import load_embedder
    from nearrec.sync.worker import SyncWorker
    from nearrec.vectors.edge import EdgeVectorStore

    data = Path(job["data_dir"])
    data.mkdir(parents=True)
    (data / "models").symlink_to(job["models"], target_is_directory=True)
    os.environ["NEARREC_DATABASE_URL"] = job["url"]
    os.environ["NEARREC_DATA_DIR"] = str(data)
    settings = Settings(embedding_backend=job["backend"])
    if job["batch_size"]:
        settings.worker_batch_size = job["batch_size"]
    embedder = load_embedder(settings)
    embedder.embed(["warm up the model"] * 64)
    engine = make_engine(job["url"])
    sessions = session_factory(engine)
    store = EdgeVectorStore(settings.data_dir / "vectors")
    rss_loaded = peak_rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    ingest(Path(job["items_csv"]), sessions, job["list_columns"])
    t_ingest, c_ingest = time.perf_counter() - t0, time.process_time() - c0
    worker = SyncWorker(sessions, store, embedder, settings)
    profile = None
    if job["profile"]:
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    t0, c0 = time.perf_counter(), time.process_time()
    worker.prepare()  # the store's collections and payload indexes (``nearrec worker`` does it first too)
    t_setup = time.perf_counter() - t0
    report = worker.drain()
    t_worker, c_worker = time.perf_counter() - t0, time.process_time() - c0
    if profile is not None:
        profile.disable()
        print_profile(profile)
    count = store.count(settings.items_collection)
    store.close()
    engine.dispose()
    return {
        "model": embedder.model_id,
        "worker_batch": settings.worker_batch_size,
        "embedded": report.items.embedded,
        "failed": report.failed,
        "points": count,
        "ingest": t_ingest,
        "worker": t_worker,
        "setup": t_setup,
        "cpu": c_ingest + c_worker,
        "rss_loaded": rss_loaded,
        "rss_peak": peak_rss_mb(),
    }


def print_profile(profile: Any) -> None:
    import io
    import pstats

    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("cumulative").print_stats(28)
    stats.sort_stats("tottime").print_stats(12)
    print(out.getvalue(), file=sys.stderr, flush=True)


def run_worker(job: dict[str, Any]) -> dict[str, Any]:
    """:func:`worker_round` in a child process (its result is the last line it prints)."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(job)],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the worker process failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# --- the run ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--batch-size", type=int, default=None, help="worker batch (NEARREC_WORKER_BATCH_SIZE)"
    )
    parser.add_argument("--backend", default=None, help="embedding backend of the worker")
    parser.add_argument("--baseline-threads", type=int, default=None, help="torch threads of the raw encode")
    parser.add_argument("--no-torch-worker", action="store_true", help="skip the torch worker round")
    parser.add_argument("--profile", action="store_true", help="cProfile the first round's worker")
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "nearrec-bench-models")
    parser.add_argument(
        "--texts",
        choices=["generated", "movielens", "demo"],
        default="generated",
        help="generated ~40-word documents (--items of them), or a real catalog file as it is",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.child:
        print(json.dumps(worker_round(json.loads(a.child))), flush=True)
        return
    server = os.environ.get("NEARREC_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    settings = Settings()
    backend = a.backend or settings.embedding_backend
    a.models.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nearrec-bench-sync-") as tmp:
        work = Path(tmp)
        items_csv, list_columns = REAL_CATALOGS.get(a.texts, (work / "items.csv", "genres"))
        if a.texts == "generated":
            write_documents(items_csv, documents(a.items))
        texts = ingested_texts(server, items_csv, list_columns)
        job = {
            "items_csv": str(items_csv),
            "list_columns": list_columns,
            "batch_size": a.batch_size,
            "models": str(a.models),
            "profile": False,
        }
        run(a, server, work, texts, {**job, "backend": backend})


def run(a: argparse.Namespace, server: str, work: Path, texts: list[str], job: dict[str, Any]) -> None:
    import torch

    from nearrec.embedding.sentence import SentenceTransformerEmbedder, default_model_path

    settings = Settings()
    baseline = SentenceTransformerEmbedder(
        default_model_path(), batch_size=settings.embedding_batch_size, torch_threads=settings.torch_threads
    )
    baseline.embed(["warm up the model"] * 64)
    threads = (
        [a.baseline_threads] if a.baseline_threads else sorted({torch.get_num_threads(), 1}, reverse=True)
    )
    words = np.mean([len(t.split()) for t in texts])
    print(
        f"{len(texts):,} items of {words:.1f} words on average; worker backend {job['backend']}; raw encode: "
        f"torch with {' and '.join(map(str, threads))} thread(s), the faster counts, batch "
        f"{settings.embedding_batch_size}",
        flush=True,
    )
    before, vectors = raw_pass(baseline, texts, settings.embedding_batch_size, threads)
    rounds = []
    for k in range(a.rounds):
        result = timed_round(server, work, k, {**job, "profile": a.profile and k == 0}, len(texts))
        after, _ = raw_pass(baseline, texts, settings.embedding_batch_size, threads)
        best = [min(p.items(), key=lambda kv: kv[1][0]) for p in (before, after)]
        result.update(raw=(best[0][1][0] + best[1][1][0]) / 2, raw_cpu=(best[0][1][1] + best[1][1][1]) / 2)
        result.update(
            raw_default=(before[threads[0]][0] + after[threads[0]][0]) / 2, default_threads=threads[0]
        )
        result.update(load=os.getloadavg()[0])
        rounds.append(result)
        print_round(k + 1, result, len(texts), before, after)
        before = after
    torch_round = None
    if not a.no_torch_worker and job["backend"] != "torch":
        torch_round = timed_round(server, work, a.rounds, {**job, "backend": "torch"}, len(texts))
    print_summary(rounds, torch_round, len(texts), job["backend"])
    print(f"embedded upsert: {upsert_rate(work, vectors):8.0f} points/s  ({len(texts):,} points of 384 dims)")
    print(f"load average:    {os.getloadavg()[0]:8.2f}  (2 cores; figures are noisy when this is high)")


Pass = dict[int, tuple[float, float]]
"""torch threads -> (wall seconds, CPU seconds) of one raw encode of every text."""


def raw_pass(
    embedder: Any, texts: list[str], batch_size: int, threads: list[int]
) -> tuple[Pass, npt.NDArray[np.float32]]:
    """``SentenceTransformer.encode`` of ``texts`` with each thread count in turn."""
    import torch

    out: Pass = {}
    vectors = np.zeros((0, 0), dtype=np.float32)
    for n in threads:
        torch.set_num_threads(n)
        t0, c0 = time.perf_counter(), time.process_time()
        vectors = embedder.model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        out[n] = (time.perf_counter() - t0, time.process_time() - c0)
    torch.set_num_threads(threads[0])
    return out, np.asarray(vectors)


def timed_round(server: str, work: Path, k: int, job: dict[str, Any], n: int) -> dict[str, Any]:
    with scratch_database(server, f"_{k}") as url:
        migrate.upgrade(url)
        result = run_worker({**job, "url": url, "data_dir": str(work / f"round{k}")})
    assert result["embedded"] == n and result["failed"] == 0 and result["points"] == n, result
    return result


def print_round(k: int, r: dict[str, Any], n: int, before: Pass, after: Pass) -> None:
    e2e = r["ingest"] + r["worker"]
    raws = ", ".join(f"{t} thread(s) {before[t][0]:.2f}s / {after[t][0]:.2f}s" for t in before)
    print(
        f"round {k}: end to end {n / e2e:7.1f} items/s ({e2e:.2f}s: ingest {r['ingest']:.2f}s, worker "
        f"{r['worker']:.2f}s of which store setup {r['setup']:.2f}s); raw {n / r['raw']:6.1f} items/s (before / after: {raws}): "
        f"ratio {r['raw'] / e2e:.3f}, CPU time {r['raw_cpu'] / r['cpu']:.3f}, load {r['load']:.2f}",
        flush=True,
    )


def print_summary(
    rounds: list[dict[str, Any]], torch_round: dict[str, Any] | None, n: int, backend: str
) -> None:
    ratios = [r["raw"] / (r["ingest"] + r["worker"]) for r in rounds]
    cpu = [r["raw_cpu"] / r["cpu"] for r in rounds]
    pooled = sum(r["raw"] for r in rounds) / sum(r["ingest"] + r["worker"] for r in rounds)
    target = "0.85" if backend == "torch" else "2"
    print(f"model:           {rounds[0]['model']}, worker batch {rounds[0]['worker_batch']}")
    print(
        f"ratio:           {statistics.median(ratios):8.3f}  median of {len(rounds)} rounds "
        f"(min {min(ratios):.3f}, max {max(ratios):.3f}); pooled {pooled:.3f}  (target >= {target})"
    )
    default = [r["raw_default"] / (r["ingest"] + r["worker"]) for r in rounds]
    print(
        f"ratio, torch {rounds[0]['default_threads']} threads: {statistics.median(default):.3f}  median "
        "(against the raw encode with torch's default threads only)"
    )
    print(
        f"ratio, CPU time: {statistics.median(cpu):8.3f}  median (process CPU seconds, less load-sensitive)"
    )
    warm = [r["raw"] / (r["ingest"] + r["worker"] - r["setup"]) for r in rounds]
    setup = statistics.median(r["setup"] for r in rounds)
    print(
        f"  store setup:   {setup:8.2f}s median (collections and payload indexes: one flush each); "
        f"without it the ratio would be {statistics.median(warm):.3f}"
    )
    rss = max(r["rss_peak"] for r in rounds)
    print(
        f"worker peak RSS: {rss:8.0f} MB  ({backend}; {rounds[0]['rss_loaded']:.0f} MB with the model loaded)"
    )
    if torch_round is not None:
        e2e = torch_round["ingest"] + torch_round["worker"]
        print(
            f"torch worker:    {torch_round['rss_peak']:8.0f} MB peak RSS  (end to end {n / e2e:.1f} items/s, "
            f"worker {torch_round['worker']:.2f}s)"
        )


def write_documents(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def ingested_texts(server: str, items_csv: Path, list_columns: str) -> list[str]:
    """The texts the worker will embed: ingest composes them (rows it rejects are not synced)."""
    with scratch_database(server, "_texts") as url:
        migrate.upgrade(url)
        os.environ["NEARREC_DATABASE_URL"] = url
        engine = make_engine(url)
        try:
            sessions = session_factory(engine)
            ingest(items_csv, sessions, list_columns)
            with sessions() as s:
                return [t or "" for t in s.scalars(select(Item.text).order_by(Item.id))]
        finally:
            engine.dispose()


def upsert_rate(work: Path, vectors: npt.NDArray[np.float32]) -> float:
    """Points per second of one upsert of ``vectors`` into a fresh embedded collection."""
    from nearrec.vectors.base import PointRecord
    from nearrec.vectors.edge import EdgeVectorStore

    with EdgeVectorStore(work / "upsert") as store:
        store.ensure_collection("bench_upsert", {"text": vectors.shape[1]})
        points = [
            PointRecord(i, {"text": v}, {"external_id": f"m{i}", "active": 1, "year": 1990 + i % 30})
            for i, v in enumerate(vectors)
        ]
        started = time.perf_counter()
        store.upsert("bench_upsert", points)
        return len(points) / (time.perf_counter() - started)


if __name__ == "__main__":
    main()
