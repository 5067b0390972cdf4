"""Reliability of the sync worker: SIGKILL mid-batch, two concurrent workers, a vector-store outage.

Real Postgres, the real embedded Qdrant engine, real worker processes / threads. The only thing injected is
the failure itself (a slow step to kill the process in, or a store wrapper that raises while "down")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker
from sync_support import (
    CountingEmbedder,
    FlakyStore,
    add_items,
    add_user,
    catalog,
    interact,
    open_store,
    outbox_count,
    outbox_rows,
    update_item,
)

from nearrec.config import Settings
from nearrec.postgres import sync_repo
from nearrec.postgres.engine import make_engine, session_factory
from nearrec.postgres.models import OutboxRow
from nearrec.postgres.outbox import enqueue
from nearrec.sync.check import check_stores
from nearrec.sync.worker import SyncWorker
from nearrec.vectors.base import VectorStore
from nearrec.vectors.edge import EdgeVectorStore

REPO = Path(__file__).resolve().parents[2]
ITEMS = "nearrec_items"


def seed(sessions: sessionmaker[Session], n_items: int, n_users: int) -> list[int]:
    ids = add_items(sessions, catalog(n_items))
    for u in range(n_users):
        uid = add_user(sessions, f"u{u}", profile=f"profile of user {u}" if u % 2 else None)
        interact(sessions, uid, [(ids[(u * 5 + k) % n_items], "view", None) for k in range(4)])
    return ids


def assert_in_sync(sessions: sessionmaker[Session], store: VectorStore, settings: Settings) -> None:
    with sessions.begin() as s:
        report = check_stores(s, store, settings, "hashing:64")
    assert report.ok, (report.problems, report.items, report.users)


# --- SIGKILL --------------------------------------------------------------------------------------------------

KILLABLE_WORKER = """
import sys, time
from pathlib import Path
from nearrec.config import Settings
from nearrec.postgres.engine import make_engine, session_factory
from nearrec.embedding import HashingEmbedder
from nearrec.sync.worker import SyncWorker
from nearrec.vectors.base import VectorStore
from nearrec.vectors.edge import EdgeVectorStore

marker, phase = Path(sys.argv[1]), sys.argv[2]
calls = {"embed": 0, "upsert": 0}

def hang(step):
    calls[step] += 1
    if step == phase and calls[step] == 2:  # batch 1 commits, batch 2 hangs here
        marker.write_text(step)
        time.sleep(60)

class Embedder(HashingEmbedder):
    def embed(self, texts):
        if texts:
            hang("embed")
        return super().embed(texts)

class Store(EdgeVectorStore):
    def upsert(self, name, points):
        super().upsert(name, points)  # the points are written, the outbox rows not yet removed
        if name.startswith("nearrec_items"):
            hang("upsert")

settings = Settings()
sessions = session_factory(make_engine(settings.database_url.get_secret_value()))
store = Store(settings.data_dir / "vectors")
SyncWorker(sessions, store, Embedder(64), settings).drain()
print("drained without being killed", flush=True)
"""


@pytest.fixture
def worker_env(database_url: str, settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(REPO / "platform"),
        NEARREC_DATABASE_URL=database_url,
        NEARREC_DATA_DIR=str(settings.data_dir),
        NEARREC_EMBEDDING_MODEL="hashing:64",
        NEARREC_WORKER_BATCH_SIZE="40",
        NEARREC_LOG_LEVEL="WARNING",
    )
    return env


@pytest.mark.parametrize("phase", ["embed", "upsert"])
def test_sigkill_mid_batch_then_restart_leaves_no_drift(
    db: Engine,
    sessions: sessionmaker[Session],
    settings: Settings,
    worker_env: dict[str, str],
    tmp_path: Path,
    phase: str,
) -> None:
    seed(sessions, 150, 10)
    before = outbox_count(sessions)
    marker = tmp_path / "marker"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLABLE_WORKER, str(marker), phase],
        env=worker_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the worker never reached batch 2"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    left = outbox_count(sessions)
    assert 0 < left < before  # batch 1 committed, batch 2 (in flight) did not

    # The store directory is free again (the kernel dropped the dead process's lock); restart for real.
    cli = [sys.executable, "-m", "nearrec"]
    done = subprocess.run(
        [*cli, "worker", "--once"], env=worker_env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert outbox_count(sessions) == 0
    check = subprocess.run(
        [*cli, "sync", "check"], env=worker_env, cwd=tmp_path, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "the stores agree" in check.stdout
    with EdgeVectorStore(settings.data_dir / "vectors") as store:
        assert store.count(ITEMS) == 150
        assert_in_sync(sessions, store, settings)


# --- two workers at once ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["edge", "qdrant-local"])
def test_two_workers_drain_one_backlog_without_double_embedding(
    db: Engine, database_url: str, settings: Settings, sessions: sessionmaker[Session], kind: str
) -> None:
    settings.worker_batch_size = 25
    ids = seed(sessions, 400, 30)
    with sessions.begin() as s:  # every block of items enqueued twice in a row: consecutive claims collide
        s.execute(delete(OutboxRow).where(OutboxRow.entity == "item"))
        for chunk in range(0, len(ids), 25):
            enqueue(s, "item", ids[chunk : chunk + 25])
            enqueue(s, "item", list(reversed(ids[chunk : chunk + 25])))
    engines = [make_engine(database_url), make_engine(database_url)]  # each worker its own connections
    embedder = CountingEmbedder(64)
    store = open_store(kind, settings)  # one store shared by both worker threads
    try:
        workers = [SyncWorker(session_factory(e), store, embedder, settings) for e in engines]
        workers[0].prepare()
        reports = []
        errors: list[BaseException] = []
        start = threading.Barrier(2)

        def run(w: SyncWorker) -> None:
            try:
                start.wait(10)
                reports.append(w.drain())
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(w,)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        assert all(r.rows > 0 for r in reports), "both workers must have done part of the work"
        assert sum(r.failed for r in reports) == 0
        assert outbox_count(sessions) == 0
        twice = {text: n for text, n in embedder.texts.items() if n > 1}
        assert not twice, f"embedded more than once: {list(twice.items())[:5]}"
        assert store.count(ITEMS) == 400
        assert_in_sync(sessions, store, settings)
    finally:
        store.close()
        for e in engines:
            e.dispose()


# --- the vector store failing for a while --------------------------------------------------------------------------


@pytest.fixture(params=["edge", "qdrant-local"])
def flaky(
    request: pytest.FixtureRequest, db: Engine, sessions: sessionmaker[Session], settings: Settings
) -> Iterator[FlakyStore]:
    store = open_store(request.param, settings)
    yield FlakyStore(store)
    store.close()


def test_outage_loses_nothing_and_the_backlog_drains_after_recovery(
    sessions: sessionmaker[Session], settings: Settings, flaky: FlakyStore
) -> None:
    settings.worker_batch_size = 30
    settings.worker_max_attempts = 50
    worker = SyncWorker(sessions, flaky, CountingEmbedder(64), settings, retry_base_seconds=0.05)
    worker.prepare()
    seed(sessions, 100, 8)
    pending = outbox_count(sessions)
    flaky.fail_after = 6  # the first batch gets half-way (some points written), then the store goes down
    report = worker.drain(wait_horizon=0.5)
    assert report.failed > 0 and flaky.failures > 0
    rows = outbox_rows(sessions)
    assert len(rows) == pending  # nothing was removed while the store was down... or lost
    failed = [r for r in rows if r.attempts > 0]
    assert failed and all(r.last_error and "injected outage" in r.last_error for r in failed)
    assert all("s3cret" not in (r.last_error or "") for r in failed)  # no secrets in the outbox
    assert all(r.failed_at is None for r in rows)
    with sessions() as s:  # backoff: retried rows are not available right away
        assert s.scalar(select(func.max(OutboxRow.available_at) > func.now())) is True

    flaky.down = False
    with sessions.begin() as s:  # skip the remaining backoff
        s.execute(update(OutboxRow).values(available_at=func.now()))
    worker.drain()
    assert outbox_count(sessions) == 0
    assert_in_sync(sessions, flaky.inner, settings)


def test_rows_are_parked_after_max_attempts_and_can_be_retried(
    sessions: sessionmaker[Session], settings: Settings, flaky: FlakyStore
) -> None:
    settings.worker_max_attempts = 3
    worker = SyncWorker(sessions, flaky, CountingEmbedder(64), settings, retry_base_seconds=0.01)
    worker.prepare()
    ids = add_items(sessions, catalog(5))
    flaky.down = True
    worker.drain(wait_horizon=1.0)
    rows = outbox_rows(sessions)
    assert len(rows) == 5 and all(r.attempts == 3 and r.failed_at is not None for r in rows)
    with sessions() as s:
        assert sync_repo.outbox_stats(s).parked == 5
        shown = sync_repo.failed_rows(s)
        assert {r.entity_id for r in shown} == set(ids)
        assert all("injected outage" in (r.last_error or "") for r in shown)
    flaky.down = False
    worker.drain()
    assert outbox_count(sessions) == 5  # parked rows wait for an operator...
    update_item(sessions, ids[0], text="changed while parked")
    worker.drain()
    assert outbox_count(sessions) == 4  # ...or for the entity's next change, which supersedes them
    with sessions.begin() as s:
        assert sync_repo.retry_parked(s) == 4
    worker.drain()
    assert outbox_count(sessions) == 0
    assert_in_sync(sessions, flaky.inner, settings)
