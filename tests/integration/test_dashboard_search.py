"""The dashboard's searches and lists against a real Postgres: substring search of item ids and titles and of
user ids through the trigram indexes (migrations 0004, 0006), and the users of the latest interactions."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, event, insert
from sqlalchemy.orm import Session, sessionmaker

from nearrec.postgres import dashboard_repo as repo
from nearrec.postgres.models import Interaction, Item, User


@pytest.fixture
def catalog(db: Engine) -> Engine:
    items = [
        {"external_id": "sku-100", "title": "Red Tent", "content_hash": "h"},
        {"external_id": "sku-101", "title": "Blue tent, 2 people", "content_hash": "h"},
        {"external_id": "sku-102", "title": "Camping stove", "content_hash": "h"},
        {"external_id": "tent", "title": "An item whose id is a word", "content_hash": "h"},
        {"external_id": "sku-50%_off", "title": "Sale", "content_hash": "h"},
        {"external_id": "ab", "title": "Two letters", "content_hash": "h"},
    ]
    with db.begin() as conn:
        conn.execute(insert(Item), items)
        conn.execute(insert(User), [{"external_id": f"user-{n:02d}"} for n in range(12)])
    return db


def ids(matches: repo.ItemMatches) -> list[str]:
    return [hit.external_id for hit in matches.hits]


def test_items_by_id_or_title_containing_the_query(catalog: Engine, sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        tent = repo.find_items(s, " TENT ")
        assert ids(tent) == ["sku-100", "sku-101", "tent"]  # case-insensitive; the id match is not first
        assert not tent.more and not tent.too_short
        exact = repo.find_items(s, "tent")
        assert ids(exact) == ["tent", "sku-100", "sku-101"]  # the item with exactly this id first, once
        assert ids(repo.find_items(s, "sku-10")) == ["sku-100", "sku-101", "sku-102"]
        assert ids(repo.find_items(s, "50%_")) == ["sku-50%_off"]  # wildcards are literal
        assert ids(repo.find_items(s, "1%0")) == []
        assert ids(repo.find_items(s, "sku", limit=2)) == ["sku-100", "sku-101"]
        assert repo.find_items(s, "sku", limit=2).more
        assert not repo.find_items(s, "sku", limit=4).more


def test_a_query_under_three_characters_finds_the_exact_id_only(
    catalog: Engine, sessions: sessionmaker[Session]
) -> None:
    with sessions() as s:
        short = repo.find_items(s, "ab")
        assert ids(short) == ["ab"] and short.too_short
        assert ids(repo.find_items(s, "te")) == []
        users = repo.find_users(s, "us")
        assert users.ids == [] and users.too_short


def test_user_ids_containing_the_query(catalog: Engine, sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        found = repo.find_users(s, "ser-1")
        assert found.ids == ["user-10", "user-11"] and not found.more
        exact = repo.find_users(s, "user-03")
        assert exact.ids == ["user-03"]
        some = repo.find_users(s, "user", limit=5)
        assert some.ids == [f"user-{n:02d}" for n in range(5)] and some.more


@pytest.mark.parametrize(
    ("query", "index"),
    [
        ("tent", "ix_items_title_trgm"),
        ("sku-1", "ix_items_external_id_trgm"),
        ("ser-0", "ix_users_external_id_trgm"),
    ],
)
def test_the_searches_can_use_the_trigram_indexes(
    catalog: Engine, sessions: sessionmaker[Session], query: str, index: str
) -> None:
    """With scans of the table and the ordered walk of the unique b-tree priced out, the plan of each search
    reads a trigram index (so the ILIKE, ESCAPE clause and all, is one the index answers): on a large table
    the planner then picks it by cost."""
    searches: list[tuple[str, object]] = []

    def record(
        _conn: object, _cur: object, statement: str, params: object, _ctx: object, _many: bool
    ) -> None:
        if "ILIKE" in statement.upper():
            searches.append((statement, params))

    search = repo.find_users if index.startswith("ix_users") else repo.find_items
    with sessions() as s:
        conn = s.connection()
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        conn.exec_driver_sql("SET LOCAL enable_indexscan = off")
        event.listen(conn, "before_cursor_execute", record)
        try:
            search(s, query)
        finally:
            event.remove(conn, "before_cursor_execute", record)
        assert len(searches) == 1
        statement, params = searches[0]
        # The limits are in the text, not bound: the generic plan of a prepared statement with LIMIT $n
        # assumes a small limit and would scan the table instead.
        assert re.search(r"LIMIT 1000\)", statement) and re.search(r"LIMIT \d+\s*$", statement), statement
        plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, params))  # type: ignore[arg-type]
    assert f"Bitmap Index Scan on {index}" in plan, plan


def test_id_lookups_cannot_use_the_trigram_indexes(catalog: Engine) -> None:
    """pg_trgm also answers ``=``: on an index over the column itself, a bulk load's id lookups took it when
    the table had no statistics yet (one scan of its pending list per row: a first load of 20,000 items took
    29 s). Every trigram index is over an expression (lower(column)), which no id lookup names."""
    with catalog.connect() as conn:
        trigram = conn.exec_driver_sql(
            "SELECT c.relname, x.indexprs IS NOT NULL FROM pg_index AS x"
            " JOIN pg_class AS c ON c.oid = x.indexrelid JOIN pg_opclass AS o ON o.oid = x.indclass[0]"
            " WHERE o.opcname = 'gin_trgm_ops' ORDER BY c.relname"
        ).all()
    assert [tuple(r) for r in trigram] == [
        ("ix_items_external_id_trgm", True),
        ("ix_items_title_trgm", True),
        ("ix_users_external_id_trgm", True),
    ]


def test_users_of_the_latest_recorded_interactions(catalog: Engine, sessions: sessionmaker[Session]) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    # (internal user id, seconds after t0), recorded in this order: the order of recording counts, not the
    # time the event happened (users 1..4 are user-00..user-03)
    rows = [(3, 10), (1, 20), (2, 5), (3, 1), (4, 0)]
    with catalog.begin() as conn:
        conn.execute(
            insert(Interaction),
            [{"user_id": u, "item_id": 1, "occurred_at": t0 + timedelta(seconds=sec)} for u, sec in rows],
        )
    with sessions() as s:
        assert repo.recently_active_users(s) == ["user-03", "user-02", "user-01", "user-00"]
        assert repo.recently_active_users(s, limit=2) == ["user-03", "user-02"]
