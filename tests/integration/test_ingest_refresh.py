"""A load leaves one pending refresh per user it touched, and a worker never reads a user before the batches
in flight commit (the user-claim counter of migration 0008 and the lock around it), on a real Postgres."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from nearrec.ingest import copy_write
from nearrec.ingest.columnar import InteractionBatches
from nearrec.ingest.loader import LoadPlan, load
from nearrec.ingest.records import InteractionOptions
from nearrec.ingest.summary import Summary
from nearrec.postgres import outbox, sync_repo
from nearrec.postgres.engine import transaction


def query(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def catalog(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO items (external_id, text, content_hash) VALUES ('i0', 'x', 'h')"))


def events(path: Path, rows: int, users: int = 5) -> Path:
    lines = ["user_id,item_id,event_id"] + [f"u{k % users},i0,{path.stem}{k}" for k in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def pending_users(engine: Engine) -> list[tuple[Any, ...]]:
    return query(
        engine,
        "SELECT u.external_id, count(*) FROM sync_outbox o JOIN users u ON u.id = o.entity_id"
        " WHERE o.entity = 'user' AND o.op = 'upsert' GROUP BY 1 ORDER BY 1",
    )


def test_each_batch_skips_the_users_held_until_a_worker_takes_a_refresh(
    db: Engine, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    catalog(db)
    batches = [
        next(iter(InteractionBatches(path, ",", InteractionOptions(), on_error="skip", batch_rows=10)))
        for path in (events(tmp_path / f"b{n}.csv", 10) for n in range(3))
    ]
    state = copy_write.CopyState()

    def write(batch: Any) -> Summary:
        with transaction(sessions) as session:
            summary = copy_write.write(session, batch, InteractionOptions(), state)
        state.committed()
        return summary

    assert write(batches[0]).enqueued == 5
    assert write(batches[1]).enqueued == 0  # every user's refresh is still pending
    assert pending_users(db) == [(f"u{k}", 1) for k in range(5)]
    # a worker takes two of them (and so bumps the counter before reading those users)
    with transaction(sessions) as session:
        claims = [c for c in sync_repo.claim(session, 100) if c.entity == "user"][:2]
        outbox.claiming_users(session)
        sync_repo.delete_rows(session, [c.id for c in claims])
    assert write(batches[2]).enqueued == 2  # every user checked again: the two taken get a new refresh
    assert pending_users(db) == [(f"u{k}", 1) for k in range(5)]


def test_a_load_in_one_transaction_enqueues_each_user_once(db: Engine, tmp_path: Path) -> None:
    catalog(db)
    paths = [events(tmp_path / f"b{n}.csv", 10, users=4) for n in range(3)]  # a batch each
    plan = LoadPlan("interactions", paths, InteractionOptions(), on_error="abort", fast_batch_size=10)
    summary = load(db, plan)
    assert (summary.inserted, summary.enqueued) == (30, 4)
    assert pending_users(db) == [(f"u{k}", 1) for k in range(4)]


def test_a_worker_reads_claimed_users_only_after_the_batches_in_flight(
    db: Engine, sessions: sessionmaker[Session]
) -> None:
    """A batch that read the counter before the worker's bump holds the lock until it commits: the worker
    waits for it. The worker holds nothing afterwards."""
    batch = sessions()
    batch.begin()
    before = outbox.user_refresh_mark(batch)
    passed = threading.Event()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with transaction(sessions) as session:
                outbox.claiming_users(session)
                passed.set()
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert not passed.wait(1.0)  # blocked by the batch in flight
    finally:
        batch.commit()
        batch.close()
        thread.join(30)
    assert passed.is_set() and not errors
    with transaction(sessions) as session:  # the next batch sees the counter moved, and is not blocked
        assert outbox.user_refresh_mark(session) != before


def test_enqueue_refresh_adds_a_row_only_where_no_unclaimed_one_is_pending(
    db: Engine, sessions: sessionmaker[Session]
) -> None:
    """Users 1-5: 1 pending, 2 claimed by a worker (locked), 3 retrying, 4 parked, 5 nothing; item 1
    pending (another entity)."""
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO sync_outbox (entity, entity_id, op, attempts, failed_at) VALUES"
                " ('user', 1, 'upsert', 0, NULL), ('user', 2, 'upsert', 0, NULL), ('user', 3, 'upsert', 1, NULL),"
                " ('user', 4, 'upsert', 5, now()), ('item', 5, 'upsert', 0, NULL)"
            )
        )
    worker = sessions()
    worker.begin()
    claimed = worker.execute(
        text("SELECT id FROM sync_outbox WHERE entity = 'user' AND entity_id = 2 FOR UPDATE")
    ).all()
    assert len(claimed) == 1
    try:
        with transaction(sessions) as session:
            assert outbox.enqueue_refresh(session, "user", [1, 2, 3, 4, 5]) == 4
    finally:
        worker.rollback()
        worker.close()
    assert query(
        db,
        "SELECT entity_id, count(*) FROM sync_outbox WHERE entity = 'user' AND attempts = 0"
        " AND failed_at IS NULL GROUP BY 1 ORDER BY 1",
    ) == [(1, 1), (2, 2), (3, 1), (4, 1), (5, 1)]
