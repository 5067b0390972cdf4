"""Two loads writing the same rows at once, on a real Postgres.

The bulk writes leave out stored rows with one index probe per row and then INSERT plainly (no ON CONFLICT).
A concurrent load can store the same event (or item) between the probe and the insert: the unique index then
raises, and the batch is written again by the ON CONFLICT statement. Here the other load holds the row
uncommitted while ours probes (it sees nothing) and inserts (it waits), then commits.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from nearrec.ingest.records import InteractionOptions, ItemOptions
from nearrec.ingest.service import ingest_interactions, ingest_items, numbered
from nearrec.ingest.summary import Summary
from nearrec.postgres.engine import transaction


def query(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def while_held(hold: Session, write: Any) -> Summary:
    """Run ``write`` in another thread while ``hold`` keeps its transaction open; commit ``hold`` once
    ``write`` is waiting for it, and return ``write``'s summary."""
    out: list[Summary] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.append(write())
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(1.0)
    assert worker.is_alive(), "the second load should wait for the first one's uncommitted row"
    hold.commit()
    worker.join(30)
    assert not errors, errors
    return out[0]


def test_concurrent_loads_of_the_same_event_store_it_once(
    db: Engine, sessions: sessionmaker[Session]
) -> None:
    event = {"user_id": "u1", "item_id": "i1", "event_id": "e1", "timestamp": "1700000000"}
    options = InteractionOptions()
    with transaction(sessions) as session:  # the user and item exist: nothing else makes the loads wait
        ingest_items(session, numbered([{"id": "i1", "title": "One"}]), ItemOptions())
        ingest_interactions(session, numbered([{**event, "event_id": "e0"}]), options)
    with sessions() as hold:
        first = ingest_interactions(hold, numbered([event]), options)
        assert first.inserted == 1  # not committed yet

        def second() -> Summary:
            with transaction(sessions) as session:
                return ingest_interactions(session, numbered([event, {**event, "event_id": "e2"}]), options)

        summary = while_held(hold, second)
    assert (summary.inserted, summary.unchanged, summary.rejected) == (1, 1, 0)
    assert query(db, "SELECT event_id FROM interactions ORDER BY event_id") == [("e0",), ("e1",), ("e2",)]
    assert query(db, "SELECT external_id FROM users") == [("u1",)]


def test_concurrent_loads_of_the_same_item_store_it_once(db: Engine, sessions: sessionmaker[Session]) -> None:
    with sessions() as hold:
        first = ingest_items(hold, numbered([{"id": "i1", "title": "One"}]), ItemOptions())
        assert first.inserted == 1  # not committed yet

        def second() -> Summary:
            rows = [{"id": "i1", "title": "One, renamed"}, {"id": "i2", "title": "Two"}]
            with transaction(sessions) as session:
                return ingest_items(session, numbered(rows), ItemOptions())

        summary = while_held(hold, second)
    assert (summary.inserted, summary.updated) == (1, 1)
    assert query(db, "SELECT external_id, title FROM items ORDER BY external_id") == [
        ("i1", "One, renamed"),
        ("i2", "Two"),
    ]
    # one outbox row per write: the first load's insert, the second's update of i1 and insert of i2
    assert query(db, "SELECT count(*) FROM sync_outbox WHERE entity = 'item'") == [(3,)]
