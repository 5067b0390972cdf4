"""Does ingestion stay linear? Load many generated interactions and print, at every tenth of them, the time,
the RSS and what the server did for them (load-independent figures, read from Postgres' statistics):

- WAL written per 1M rows, by the whole server (full-page images after each checkpoint are the part that grows
  with the indexes);
- index blocks read from outside shared_buffers per 1k rows (the indexes outgrowing the server's cache);
- blocks the loading backend had to write out itself to free a buffer (``buffers_backend``);
- CPU seconds per 1M rows of the database's backends and of the loading process (they do not change with
  the other load of a shared machine as much as the time does).

At the end: the size of each index of ``interactions`` beside the server's ``shared_buffers``.

Run alone (a scratch database on the server of ``NEARREC_DATABASE_URL``, created and dropped)::

    .venv/bin/python bench/ingest_scale.py [--interactions 10000000] [--users 100000] [--lock F]

``--embedded DIR`` runs it on the embedded default's Postgres (data dir ``DIR``), with the settings nearrec
gives that server.

or as the last part of ``bench/ingest.py --scale N``.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import random
import resource
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_copy import scratch_database  # noqa: E402
from nearrec.postgres import migrate  # noqa: E402

_STATS = """
SELECT coalesce((SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'interactions'), 0),
       pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint,
       coalesce((SELECT sum(idx_blks_read) FROM pg_statio_user_indexes WHERE relname = 'interactions'), 0)::bigint,
       {backend_writes}
"""
# Blocks written by the backends themselves: pg_stat_bgwriter up to Postgres 16, pg_stat_io from 16 on.
_BACKEND_WRITES_15 = "(SELECT buffers_backend FROM pg_stat_bgwriter)"
_BACKEND_WRITES_16 = (
    "(SELECT coalesce(sum(writes), 0)::bigint FROM pg_stat_io WHERE backend_type = 'client backend')"
)
_BACKENDS = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
_INDEXES = """
SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes
WHERE relname = 'interactions' ORDER BY 2 DESC
"""


@dataclass(frozen=True)
class Sample:
    seconds: float
    rows: int
    wal: int
    blocks_read: int
    backend_writes: int
    rss_mb: float
    server_cpu: float  # seconds, the database's backends (read from /proc: the server runs on this machine)
    loader_cpu: float  # seconds, this process


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Monitor(threading.Thread):
    """Samples the server's statistics every ``every`` seconds on its own connection."""

    def __init__(self, conninfo: str, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self._conn = psycopg.connect(conninfo, autocommit=True)
        self._every = every
        self._stop_event = threading.Event()
        self.started = time.perf_counter()
        self._cpu: dict[int, float] = {}  # backend pid -> its CPU seconds when last seen
        version = int(self._conn.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]
        writes = _BACKEND_WRITES_16 if version >= 160000 else _BACKEND_WRITES_15
        self._stats = _STATS.format(backend_writes=writes)
        self.samples: list[Sample] = [self._sample()]

    def _sample(self) -> Sample:
        self._conn.execute("SELECT pg_stat_clear_snapshot()")
        rows, wal, read, written = self._conn.execute(self._stats).fetchone()  # type: ignore[misc]
        for (pid,) in self._conn.execute(_BACKENDS).fetchall():
            self._cpu[pid] = max(self._cpu.get(pid, 0.0), _process_cpu(pid))
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return Sample(time.perf_counter() - self.started, rows, wal, read, written, rss_mb(),
                      sum(self._cpu.values()), usage.ru_utime + usage.ru_stime)  # fmt: skip

    def run(self) -> None:
        while not self._stop_event.wait(self._every):
            self.samples.append(self._sample())

    def stop(self) -> list[tuple[str, int]]:
        """Stop sampling (one last sample); returns the indexes of ``interactions`` and their bytes."""
        self._stop_event.set()
        self.join()
        time.sleep(1.1)  # a backend flushes its statistics at most once a second
        self.samples.append(self._sample())
        indexes = [(str(name), int(size)) for name, size in self._conn.execute(_INDEXES).fetchall()]
        return indexes

    def shared_buffers(self) -> str:
        return str(self._conn.execute("SHOW shared_buffers").fetchone()[0])  # type: ignore[index]


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process of this machine (0 when it cannot be read)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(samples: list[Sample], n: int) -> None:
    """One line per tenth of ``n`` rows inserted (from the first sample past each mark)."""
    print(f"{'rows':>12}{'seconds':>9}{'s per 1M':>10}{'CPU s/1M: server':>18}{'loader':>8}{'WAL MB/1M':>11}"
          f"{'idx reads/1k':>14}{'backend writes/1k':>19}{'RSS MB':>8}")  # fmt: skip
    first = samples[0]
    last = first
    tenths: list[tuple[float, float, float]] = []  # seconds, server CPU, RSS of each tenth
    for tenth in range(1, 11):
        mark = n * tenth // 10
        at = next((s for s in samples if s.rows - first.rows >= mark), None)
        if at is None or at.rows == last.rows:
            continue
        rows = at.rows - last.rows
        per_1m = 1e6 / rows
        print(f"{at.rows - first.rows:>12,}{at.seconds:>9.1f}{(at.seconds - last.seconds) * per_1m:>10.1f}"
              f"{(at.server_cpu - last.server_cpu) * per_1m:>18.1f}{(at.loader_cpu - last.loader_cpu) * per_1m:>8.1f}"
              f"{(at.wal - last.wal) / 2**20 * 1e6 / rows:>11.0f}"
              f"{(at.blocks_read - last.blocks_read) * 1e3 / rows:>14.1f}"
              f"{(at.backend_writes - last.backend_writes) * 1e3 / rows:>19.1f}{at.rss_mb:>8.0f}")  # fmt: skip
        tenths.append(
            ((at.seconds - last.seconds) * per_1m, (at.server_cpu - last.server_cpu) * per_1m, at.rss_mb)
        )
        last = at
    if len(tenths) == 10:  # the first tenth also creates the users: the comparison starts at the second
        early, late = tenths[1:4], tenths[7:10]
        time_ratio = sum(t for t, _, _ in late) / sum(t for t, _, _ in early)
        cpu_ratio = sum(c for _, c, _ in late) / sum(c for _, c, _ in early)
        rss_ratio = max(r for _, _, r in late) / max(r for _, _, r in early)
        print(f"last three tenths against tenths 2-4 (linear and flat: ~1): time per row {time_ratio:.2f}, "
              f"server CPU per row {cpu_ratio:.2f}, RSS {rss_ratio:.2f}")  # fmt: skip


def scale_run(url: str, conninfo: str, path: Path, n: int) -> None:
    """Load the ``n`` generated interactions of ``path`` (new event ids) as ``nearrec ingest`` does, and
    print the figures of every tenth."""
    from sqlalchemy import create_engine

    from nearrec.cli.ingest_cmd import FAST_BATCH_ROWS
    from nearrec.config import Settings
    from nearrec.ingest.loader import LoadPlan, load
    from nearrec.ingest.options import interaction_options

    settings = Settings()
    plan = LoadPlan(
        "interactions",
        [path],
        interaction_options(settings),
        batch_size=settings.ingest_batch_size,
        fast_batch_size=FAST_BATCH_ROWS,
    )
    monitor = Monitor(conninfo)
    engine = create_engine(url)
    monitor.start()
    try:
        summary = load(engine, plan)
    finally:
        engine.dispose()  # the loader's backend exits, flushing its statistics
        indexes = monitor.stop()
    total = monitor.samples[-1].seconds
    report(monitor.samples, summary.inserted)
    print(f"scale run: {summary.inserted:,} rows inserted in {total:.1f} s = {summary.inserted / total:,.0f}"
          f" rows/s; {summary.rejected:,} rejected; peak RSS {peak_rss_mb():.0f} MB")  # fmt: skip
    sizes = ", ".join(f"{name} {size / 2**20:,.0f} MB" for name, size in indexes)
    print(f"indexes of interactions: {sizes}; shared_buffers {monitor.shared_buffers()}")


def _embedded(data_dir: Path) -> str:
    """Start the embedded Postgres of ``data_dir`` with its settings in force: a first nearrec process writes
    them (shared_buffers applies from the next start) and stops the server on exit; this one starts it again."""
    import subprocess

    from nearrec.postgres.embedded_server import start_embedded_postgres

    env = {k: v for k, v in os.environ.items() if not k.startswith("NEARREC_")} | {
        "NEARREC_DATA_DIR": str(data_dir)
    }
    subprocess.run(
        [sys.executable, "-m", "nearrec", "db", "upgrade"], env=env, check=True, capture_output=True
    )
    return start_embedded_postgres(data_dir)


def main() -> None:
    from ingest import generate_interactions

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interactions", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--lock", help="hold this lock file (flock) for the timed part only")
    parser.add_argument(
        "--embedded",
        type=Path,
        help="run on the embedded default's Postgres of this data dir, as nearrec sets it up",
    )
    a = parser.parse_args()
    server = _embedded(a.embedded) if a.embedded else None
    server = server or os.environ.get("NEARREC_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    with (
        tempfile.TemporaryDirectory(prefix="nearrec-bench-") as tmp,
        scratch_database(server) as (url, conninfo),
    ):
        path = Path(tmp) / "interactions.csv"
        print(f"generating {a.interactions:,} interactions over {a.users:,} users ...", flush=True)
        generate_interactions(path, a.interactions, a.users, a.items, random.Random(a.seed))
        os.environ["NEARREC_DATABASE_URL"] = url
        migrate.upgrade(url)
        with psycopg.connect(conninfo) as conn:  # the items the interactions name (no text needed here)
            conn.execute(
                "INSERT INTO items (external_id, text, content_hash)"
                " SELECT 'i' || g, 'item ' || g, md5(g::text) FROM generate_series(0, %s - 1) AS g",
                (a.items,),
            )
        if a.lock:
            fcntl.flock(os.open(a.lock, os.O_RDWR | os.O_CREAT), fcntl.LOCK_EX)  # released at exit
        scale_run(url, conninfo, path, a.interactions)


if __name__ == "__main__":
    main()
