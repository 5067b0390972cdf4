"""Sync throughput: items ingested and synced end to end by the worker vs raw ``SentenceTransformer.encode``.

In ONE run, on the same model object:

1. end to end: ``nearrec ingest items`` (in-process) of N item texts into a scratch Postgres database, then
   the sync worker (``SyncWorker.drain``, what ``nearrec worker --once`` runs) embeds them and upserts them
   into the embedded Qdrant engine (qdrant-edge) under a temporary data dir;
2. raw: ``SentenceTransformer.encode`` of exactly the documents the worker embedded (read back from
   Postgres), with the same batch size, once right before and once right after the worker (the ratio uses
   their mean, because the load of a shared machine drifts).

Prints items/s for both, their ratio, the peak RSS of the process (which ran the worker) and the embedded
store's upsert rate (points/s) for the same vectors.

``--backend`` picks the worker's embedding backend (default: ``NEARREC_EMBEDDING_BACKEND``); the raw encode is
always torch's ``SentenceTransformer.encode``, today's baseline. Targets: ratio >= 0.85 with ``torch`` (the
model is the physical limit), >= 2 with a faster backend (issue 16). With another backend than torch, the
process holds both models, so its peak RSS says little: bench/embedding.py measures each backend alone.

Texts: N (default 5,000) descriptions of ~40 words built from the MovieLens titles, years and genres in
../shared/datasets plus plain English words (generated, seeded); or, with ``--texts movielens|demo``, the
MovieLens-100k items file or the bundled demo catalog as they are.

    .venv/bin/python bench/sync.py [--items 5000] [--batch-size N] [--backend torch|onnx|onnx-int8]
        [--texts generated|movielens|demo]

Uses the Postgres server of ``NEARREC_DATABASE_URL`` (default 127.0.0.1:5432), in a scratch database that it
creates and drops.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from sqlalchemy import select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from nearrec.config import Settings  # noqa: E402
from nearrec.embedding import Embedder, load_embedder  # noqa: E402
from nearrec.embedding.sentence import SentenceTransformerEmbedder, default_model_path  # noqa: E402
from nearrec.postgres import migrate  # noqa: E402
from nearrec.postgres.engine import make_engine, normalise_url, session_factory  # noqa: E402
from nearrec.postgres.models import Item  # noqa: E402
from nearrec.sync.worker import SyncWorker  # noqa: E402
from nearrec.vectors.base import PointRecord  # noqa: E402
from nearrec.vectors.edge import EdgeVectorStore  # noqa: E402

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
def scratch_database(server_url: str) -> Iterator[str]:
    base = make_url(normalise_url(server_url))
    name = f"nearrec_bench_sync_{os.getpid()}"
    admin_url = base.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


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
    """Peak RSS since the last :func:`reset_peak_rss` (Linux VmHWM), else since the process started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def reset_peak_rss() -> None:
    """Reset the peak RSS to the current RSS (Linux: ``5`` to /proc/self/clear_refs), if allowed."""
    with suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument(
        "--batch-size", type=int, default=None, help="worker batch (NEARREC_WORKER_BATCH_SIZE)"
    )
    parser.add_argument("--backend", default=None, help="embedding backend of the worker")
    parser.add_argument(
        "--texts",
        choices=["generated", "movielens", "demo"],
        default="generated",
        help="generated ~40-word documents (--items of them), or a real catalog file as it is",
    )
    a = parser.parse_args()
    server = os.environ.get("NEARREC_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

    with tempfile.TemporaryDirectory(prefix="nearrec-bench-sync-") as tmp, scratch_database(server) as url:
        work = Path(tmp)
        items_csv, list_columns = REAL_CATALOGS.get(a.texts, (work / "items.csv", "genres"))
        if a.texts == "generated":
            rows = documents(a.items)
            with open(items_csv, "w", encoding="utf-8", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        else:
            with open(items_csv, encoding="utf-8") as f:
                a.items = sum(1 for _ in csv.DictReader(f))
        os.environ["NEARREC_DATABASE_URL"] = url
        os.environ["NEARREC_DATA_DIR"] = str(work / "data")
        migrate.upgrade(url)
        settings = Settings()
        if a.batch_size:
            settings.worker_batch_size = a.batch_size
        if a.backend:
            settings.embedding_backend = a.backend
        embedder = SentenceTransformerEmbedder(
            default_model_path(),
            batch_size=settings.embedding_batch_size,
            torch_threads=settings.torch_threads,
        )
        embedder.embed(["warm up the model"] * 64)
        worker_embedder: Embedder = embedder
        if settings.embedding_backend != "torch":
            worker_embedder = load_embedder(settings)
            worker_embedder.embed(["warm up the model"] * 64)
        engine = make_engine(url)
        sessions = session_factory(engine)
        store = EdgeVectorStore(settings.data_dir / "vectors")
        print(
            f"{a.items:,} items, worker model {worker_embedder.model_id}, worker batch {settings.worker_batch_size}, "
            f"encode batch {settings.embedding_batch_size}",
            flush=True,
        )

        # End to end = ingest + worker. The raw encodes of the same documents run right before and right
        # after the worker, and the ratio uses their mean: on a shared machine the load drifts.
        t0, c0 = time.perf_counter(), time.process_time()
        ingest(items_csv, sessions, list_columns)
        t_ingest, cpu_ingest = time.perf_counter() - t0, time.process_time() - c0
        with sessions() as s:
            texts = [t or "" for t in s.scalars(select(Item.text).order_by(Item.id))]
        if len(texts) != a.items:  # rows that ingest rejects (MovieLens-100k: 2) are not synced
            print(f"{a.items - len(texts)} rows rejected by ingest; {len(texts):,} items to sync", flush=True)
            a.items = len(texts)
        raw1, cpu_raw1, vectors = raw_encode(embedder, texts, settings.embedding_batch_size)
        reset_peak_rss()  # from here on: the worker's own peak
        rss_start = peak_rss_mb()
        t0, c0 = time.perf_counter(), time.process_time()
        report = SyncWorker(sessions, store, worker_embedder, settings).drain()
        t_worker, cpu_worker = time.perf_counter() - t0, time.process_time() - c0
        assert report.items.embedded == a.items and report.failed == 0, report
        assert store.count(settings.items_collection) == a.items
        rss = peak_rss_mb()
        raw2, cpu_raw2, _ = raw_encode(embedder, texts, settings.embedding_batch_size)
        e2e, raw, cpu_raw = t_ingest + t_worker, (raw1 + raw2) / 2, (cpu_raw1 + cpu_raw2) / 2

        # 3. embedded upsert rate for the same vectors, into a fresh collection
        store.ensure_collection("bench_upsert", {"text": embedder.dim})
        points = [
            PointRecord(i, {"text": v}, {"external_id": f"m{i}", "active": 1, "year": 1990 + i % 30})
            for i, v in enumerate(np.asarray(vectors))
        ]
        started = time.perf_counter()
        store.upsert("bench_upsert", points)
        upsert = time.perf_counter() - started
        store.close()
        engine.dispose()

    words = np.mean([len(t.split()) for t in texts])
    e2e_rate, raw_rate = a.items / e2e, a.items / raw
    print(f"documents:       {a.items:,} of {words:.1f} words on average")
    print(
        f"end to end:      {e2e_rate:8.1f} items/s  ({e2e:.1f}s: ingest {t_ingest:.1f}s, worker {t_worker:.1f}s)"
    )
    print(f"raw encode:      {raw_rate:8.1f} items/s  (before {raw1:.1f}s, after {raw2:.1f}s)")
    target = "0.85" if settings.embedding_backend == "torch" else "2"
    print(
        f"ratio:           {e2e_rate / raw_rate:8.3f}  (target >= {target}, backend {settings.embedding_backend})"
    )
    print(
        f"ratio, CPU time: {cpu_raw / (cpu_worker + cpu_ingest):8.3f}  (process CPU seconds, less load-sensitive)"
    )
    print(
        f"peak RSS:        {rss:8.0f} MB  (while the worker ran; {rss_start:.0f} MB before it: model(s) loaded)"
    )
    print(
        f"embedded upsert: {len(points) / upsert:8.0f} points/s  ({len(points):,} points of {embedder.dim} dims)"
    )
    print(f"load average:    {os.getloadavg()[0]:8.2f}  (2 cores; figures are noisy when this is high)")


def raw_encode(
    embedder: SentenceTransformerEmbedder, texts: list[str], batch_size: int
) -> tuple[float, float, npt.NDArray[np.float32]]:
    """Wall and CPU seconds of ``SentenceTransformer.encode`` over ``texts``, and the vectors."""
    t0, c0 = time.perf_counter(), time.process_time()
    vectors = embedder.model.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
    )
    return time.perf_counter() - t0, time.process_time() - c0, np.asarray(vectors)


if __name__ == "__main__":
    main()
