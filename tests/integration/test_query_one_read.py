"""``recommend`` in ONE database round trip: the answer from the item points' payload, the items with pending
vector work (an outbox row) kept out of the store query, and the Postgres row read as the fallback.

Real Postgres, both real in-process engines (qdrant-edge, qdrant-client's local mode), real worker. Statements are counted at the driver: an engine
``connect`` listener gives each connection a counting cursor class, so the reads that run on the psycopg
connection directly (:func:`nearrec.postgres.query_repo.driver`) are counted with SQLAlchemy's own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, event, select, text, update
from sqlalchemy.orm import Session, sessionmaker
from sync_support import open_store

from factories import (
    Stack,
    deactivate_items,
    delete_items,
    genre_catalog,
    ids,
    item_rows,
    load_items,
)
from nearrec.cli.reindex_cmd import run_reindex
from nearrec.config import Settings
from nearrec.errors import NotFoundError
from nearrec.postgres import sync_repo
from nearrec.postgres.engine import read_sessions, transaction
from nearrec.postgres.models import Item
from nearrec.postgres.outbox import enqueue
from nearrec.query.results import Recommendation
from nearrec.query.service import QueryService
from nearrec.sync.check import check_stores, repair
from nearrec.sync.worker import SyncWorker
from nearrec.vectors.base import PointRecord
from nearrec.vectors.payload import FIELDS, TITLE

FIELD_NAMES = ["genre", "price", "in_stock", "tags", "meta", "absent"]


def catalog() -> list[dict[str, Any]]:
    """The genre catalog with attributes the payload's top level does not hold as Postgres does: a boolean
    (stored as 0 / 1), an object (not filterable)."""
    rows = genre_catalog(10)
    for n, row in enumerate(rows):
        row["attributes"]["meta"] = {"shelf": n % 3, "tags": ["a", n]}
    return rows


class Counted:
    """A query service on its own engine whose statements are counted."""

    def __init__(self, database_url: str, stack: Stack) -> None:
        self.statements: list[str] = []
        statements = self.statements

        class CountingCursor(psycopg.Cursor[Any]):
            def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
                statements.append(" ".join(str(query).split())[:80])
                return super().execute(query, params, **kwargs)

        self.engine: Engine = create_engine(database_url, pool_size=2)

        @event.listens_for(self.engine, "connect")
        def count_statements(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.cursor_factory = CountingCursor

        self.service = QueryService(
            read_sessions(self.engine), stack.store, stack.settings, embedder=lambda: stack.embedder
        )

    def recommend(self, user: str, **kwargs: Any) -> tuple[list[Recommendation], int]:
        """The answer and the number of statements it took (after a first call: caches are warm)."""
        del self.statements[:]
        recs = self.service.recommend(user, **kwargs)
        return recs, len(self.statements)


@pytest.fixture(params=["edge", "qdrant-local"])
def stack(
    request: pytest.FixtureRequest,
    db: Engine,
    sessions: sessionmaker[Session],
    settings: Settings,
    tmp_path: Path,
) -> Iterator[Stack]:
    """The stack on both real in-process engines: qdrant-edge and qdrant-client's local mode."""
    st = Stack(sessions, settings, tmp_path / "vectors")
    if request.param != "edge":
        st.store.close()
        st.store = open_store(request.param, settings)
        st.worker = SyncWorker(sessions, st.store, st.embedder, settings)
        st.service = QueryService(sessions, st.store, settings, embedder=lambda: st.embedder)
    yield st
    st.store.close()


@pytest.fixture
def counted(stack: Stack, database_url: str) -> Iterator[Counted]:
    c = Counted(database_url, stack)
    yield c
    c.engine.dispose()


def loaded(stack: Stack) -> dict[str, int]:
    items = stack.add_items(catalog())
    u = stack.add_user("ann")
    stack.interact(u, [items["scifi-0"], items["scifi-1"], items["comedy-0"]], "like")
    stack.sync()
    return items


def postgres_answer(stack: Stack, recs: list[Recommendation]) -> dict[str, tuple[str | None, dict[str, Any]]]:
    """(title, fields) of each recommended item as Postgres holds them."""
    with stack.sessions() as s:
        rows = {r.external_id: r for r in s.scalars(select(Item).where(Item.external_id.in_(ids(recs))))}
    return {e: (rows[e].title, {f: rows[e].attributes.get(f) for f in FIELD_NAMES}) for e in ids(recs)}


def test_one_statement_and_the_answer_is_the_postgres_rows(stack: Stack, counted: Counted) -> None:
    items = loaded(stack)
    counted.recommend("ann", filter={"genre": "drama"})  # fills the caches (attribute schema, model record)
    recs, n = counted.recommend("ann", k=12, fields=FIELD_NAMES, exclude_ids=["scifi-2"])
    assert n == 1, counted.statements
    assert len(recs) == 12 and "scifi-2" not in ids(recs) and "scifi-0" not in ids(recs)
    assert {r.item_id: (r.title, r.fields) for r in recs} == postgres_answer(stack, recs)
    assert all(type(r.fields["in_stock"]) is bool and isinstance(r.fields["meta"], dict) for r in recs)
    filtered, n = counted.recommend("ann", k=5, filter={"genre": "horror"}, fields=["genre"])
    assert n == 1, counted.statements
    assert len(filtered) == 5 and all(r.fields == {"genre": "horror"} for r in filtered)
    explained, n = counted.recommend("ann", k=4, explain=True)
    assert n == 1, counted.statements  # the recent events come with the user, titles from the payload
    assert all(r.reason is not None and r.reason.kind == "history" for r in explained)
    titles = {r.reason.item_id: r.reason.title for r in explained if r.reason}
    assert titles and all(t == f"{e.split('-')[0].title()} {e.split('-')[1]}" for e, t in titles.items())
    assert items  # the catalog went in through the ingest service


def test_the_read_connection_goes_back_to_the_pool_transactional(stack: Stack, database_url: str) -> None:
    """The one read runs on a pooled connection in autocommit mode; the pool's next user (a writer) gets it
    back in transactions: its rollback undoes its write."""
    loaded(stack)
    engine = create_engine(database_url, pool_size=1, max_overflow=0)  # one connection: the same one reused
    try:
        service = QueryService(
            read_sessions(engine), stack.store, stack.settings, embedder=lambda: stack.embedder
        )
        assert service.recommend("ann", k=3)
        writer = sessionmaker(engine)
        with writer() as session:
            session.execute(update(Item).where(Item.external_id == "drama-0").values(title="changed"))
            session.rollback()
        with writer() as session:
            assert session.scalar(select(Item.title).where(Item.external_id == "drama-0")) != "changed"
        with pytest.raises(NotFoundError):
            service.recommend("nobody")
        pooled = engine.raw_connection()
        assert pooled.driver_connection.autocommit is False
        pooled.close()
    finally:
        engine.dispose()


def test_item_deactivated_or_deleted_in_postgres_never_appears_before_the_sync(
    stack: Stack, counted: Counted
) -> None:
    items = loaded(stack)
    first, _ = counted.recommend("ann", k=6)
    off, gone = first[0].item_id, first[1].item_id
    assert deactivate_items(stack.sessions, [off]) == 1
    delete_items(stack.sessions, [gone])
    # the store still holds both as active: only the outbox knows
    points = {
        h.id: h.payload
        for h in stack.store.retrieve(stack.settings.items_collection, [items[off], items[gone]])
    }
    assert points[items[off]]["active"] == 1 and items[gone] in points
    recs, n = counted.recommend("ann", k=40)
    assert n == 1 and len(recs) == 40 - 3 - 2  # all but the seen, the deactivated and the deleted
    assert off not in ids(recs) and gone not in ids(recs)
    stack.sync()
    recs, n = counted.recommend("ann", k=40)
    assert n == 1 and off not in ids(recs) and gone not in ids(recs)


def test_changed_title_and_fields_appear_after_the_sync(stack: Stack, counted: Counted) -> None:
    items = loaded(stack)
    first, _ = counted.recommend("ann", k=3, fields=["tags"])
    target = first[0].item_id
    row = item_rows(stack.sessions, [items[target]])[items[target]]
    new_attributes = {**row["attributes"], "tags": ["renamed"], "note": "new"}
    load_items(stack.sessions, [{**row, "title": "A New Title", "attributes": new_attributes}])
    pending, n = counted.recommend("ann", k=40, fields=["tags", "note"])
    assert n == 1 and len(pending) == 40 - 3 - 1 and target not in ids(pending)  # kept out, not stale
    stack.sync()
    recs, n = counted.recommend("ann", k=40, fields=["tags", "note"])
    assert n == 1 and len(recs) == 40 - 3
    [rec] = [r for r in recs if r.item_id == target]
    assert rec.title == "A New Title" and rec.fields == {"tags": ["renamed"], "note": "new"}


def test_too_many_pending_items_fall_back_to_the_row_read(stack: Stack, counted: Counted) -> None:
    items = loaded(stack)
    stack.settings.seen_filter_limit = 2  # the store filter's bound: 3 pending items are past it
    first, _ = counted.recommend("ann", k=6)
    off = first[0].item_id
    deactivate_items(stack.sessions, [off])
    with transaction(stack.sessions) as s:
        enqueue(s, "item", [items[r.item_id] for r in first[1:3]])  # unchanged, but pending
    recs, n = counted.recommend("ann", k=40, fields=["genre"])
    assert n == 2, counted.statements  # the user read, then the rows of the answer
    assert off not in ids(recs) and len(recs) == 40 - 3 - 1
    assert set(ids(first)[1:3]) <= set(ids(recs))  # pending but not excluded: the rows vouch for them
    assert {r.item_id: (r.title, r.fields["genre"]) for r in recs} == {
        e: (t, f["genre"]) for e, (t, f) in postgres_answer(stack, recs).items()
    }
    stack.sync()
    recs, n = counted.recommend("ann", k=6)
    assert n == 1 and off not in ids(recs)


def test_points_written_before_titles_were_in_the_payload(stack: Stack, counted: Counted) -> None:
    loaded(stack)
    name = stack.settings.items_collection
    old = [
        PointRecord(h.id, h.all_vectors(), {k: v for k, v in h.payload.items() if k not in (TITLE, FIELDS)})
        for h in stack.store.scroll(name, with_vectors=True)
    ]
    stack.store.upsert(name, old)  # as an older worker wrote them
    counted.recommend("ann")
    recs, n = counted.recommend("ann", k=40, fields=FIELD_NAMES, explain=True)
    assert n >= 2 and len(recs) == 40 - 3  # the rows of the answer (and of the reasons) from Postgres
    assert {r.item_id: (r.title, r.fields) for r in recs} == postgres_answer(stack, recs)
    assert all(r.reason is not None and r.reason.title for r in recs)
    # `nearrec sync check --repair` finds every point's payload short and the worker rewrites them
    with transaction(stack.sessions) as s:
        report = check_stores(s, stack.store, stack.settings, None)
        assert len(report.items.payload) == len(old)
        repair(s, report)
    assert stack.worker.drain().items.rewritten == len(old)
    again, n = counted.recommend("ann", k=40, fields=FIELD_NAMES)
    assert n == 1 and {r.item_id: (r.title, r.fields) for r in again} == {
        r.item_id: (r.title, r.fields) for r in recs
    }


def test_an_item_changed_during_a_reindex_stays_out_until_the_new_collection_has_it(
    stack: Stack, counted: Counted
) -> None:
    items = loaded(stack)
    first, _ = counted.recommend("ann", k=4)
    off = first[0].item_id
    done: list[str] = []

    def meanwhile(phase: str, n: int) -> None:
        # deactivated after its new point was written; a worker applies it to the old collection only
        if phase == "users" and not done:
            deactivate_items(stack.sessions, [off])
            stack.worker.drain()
            done.append(off)

    report = run_reindex(
        stack.sessions, stack.store, stack.embedder, stack.settings, chunk=16, progress=meanwhile
    )
    assert done and report.requeued >= 1
    name = stack.settings.items_collection
    assert stack.store.resolve_alias(name) == report.items_collection
    assert stack.store.retrieve(name, [items[off]])[0].payload["active"] == 1  # the new point is stale...
    recs, n = counted.recommend("ann", k=40)
    assert n == 1 and len(recs) == 40 - 3 - 1 and off not in ids(recs)  # ...and pending: kept out
    stack.sync()
    assert stack.store.retrieve(name, [items[off]])[0].payload["active"] == 0
    recs, n = counted.recommend("ann", k=40)
    assert n == 1 and len(recs) == 40 - 3 - 1 and off not in ids(recs)


def test_workers_wait_while_a_reindex_holds_them(stack: Stack) -> None:
    stack.add_items(catalog()[:3])
    done: list[int] = []
    with transaction(stack.sessions) as held:
        sync_repo.hold_workers(held)
        worker = threading.Thread(target=lambda: done.append(stack.worker.run_batch().rows))
        worker.start()
        worker.join(1.0)
        assert worker.is_alive() and not done  # waiting for the hold
    worker.join(30)
    assert done == [3]


def test_a_connection_the_server_closed_is_not_put_back(stack: Stack, database_url: str) -> None:
    """A pooled connection the server terminated fails the one request that meets it, and leaves the pool: the
    next request gets a new connection."""
    loaded(stack)
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        service = QueryService(
            read_sessions(engine), stack.store, stack.settings, embedder=lambda: stack.embedder
        )
        assert service.recommend("ann", k=3)
        pooled = engine.raw_connection()
        pid = pooled.driver_connection.info.backend_pid
        pooled.close()
        with stack.sessions() as session:
            session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(psycopg.OperationalError):
            service.recommend("ann", k=3)
        assert service.recommend("ann", k=3)
    finally:
        engine.dispose()
