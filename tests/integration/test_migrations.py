"""The Alembic migrations against a real Postgres: up, down, and agreement with the models."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url

from nearrec.postgres import migrate
from nearrec.postgres.models import Base
from nearrec.postgres.scratch import scratch_database


@pytest.fixture
def scratch_url(database_url: str) -> Iterator[str]:
    """A second, empty database on the same server, so the session database is left alone."""
    with scratch_database(database_url, f"{make_url(database_url).database}_mig", migrate=False) as url:
        yield url


def _tables(url: str) -> set[str]:
    eng = create_engine(url)
    try:
        return set(inspect(eng).get_table_names())
    finally:
        eng.dispose()


def test_upgrade_to_head_then_down_to_base(scratch_url: str) -> None:
    migrate.upgrade(scratch_url)
    assert {"items", "users", "interactions", "sync_outbox", "alembic_version"} <= _tables(scratch_url)
    eng = create_engine(scratch_url)
    assert migrate.current_revision(eng) == migrate.head_revision(scratch_url)
    eng.dispose()

    migrate.downgrade(scratch_url, "base")
    assert _tables(scratch_url) == {"alembic_version"}

    migrate.upgrade(scratch_url)  # and up again: downgrade left nothing behind that blocks it
    assert "items" in _tables(scratch_url)


def test_models_and_migrations_agree(engine: Engine) -> None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_unique_keys_exist(db: Engine) -> None:
    def insert_event(event_id: str | None, key: str | None, user_id: int = 1) -> None:
        with db.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO interactions (user_id, item_id, occurred_at, event_id, event_key)"
                    " VALUES (:user_id, 1, now(), :event_id, CAST(:key AS uuid))"
                ),
                {"user_id": user_id, "event_id": event_id, "key": key},
            )

    with db.begin() as conn:
        conn.execute(text("INSERT INTO items (external_id, content_hash) VALUES ('a', 'h')"))
        conn.execute(text("INSERT INTO users (external_id) VALUES ('u'), ('v')"))
    with pytest.raises(Exception, match="uq_items_external_id"), db.begin() as conn:
        conn.execute(text("INSERT INTO items (external_id, content_hash) VALUES ('a', 'h2')"))
    key = "00000000-0000-0000-0000-000000000001"
    insert_event("e1", None)
    with pytest.raises(Exception, match="uq_interactions_event_id"):  # an event id is one event, whoever
        insert_event("e1", None, user_id=2)
    insert_event(None, key)
    with pytest.raises(Exception, match="uq_interactions_user_event_key"):
        insert_event(None, key)
    insert_event(None, key, user_id=2)  # a content key is per user (the key is a hash that holds the user)
    insert_event("e2", key)  # a row with an event id is identified by it alone
    with pytest.raises(Exception, match="ck_attribute_schema_type"), db.begin() as conn:
        conn.execute(text("INSERT INTO attribute_schema (entity, name, type) VALUES ('item', 'x', 'money')"))


def test_upgrade_from_0004_keeps_the_events_of_each_identity(scratch_url: str) -> None:
    migrate.upgrade(scratch_url, "0004_item_search")
    eng = create_engine(scratch_url)
    try:
        with eng.begin() as conn:
            conn.execute(text("INSERT INTO users (external_id) VALUES ('u')"))
            conn.execute(
                text(
                    "INSERT INTO interactions (user_id, item_id, occurred_at, event_id) VALUES"
                    " (1, 1, now(), 'e1'), (1, 2, now(), 'e1'), (1, 2, now(), NULL), (1, 2, now(), NULL)"
                )
            )  # two rows with the same event id: possible by other means than nearrec (random keys)
        migrate.upgrade(scratch_url)
        with eng.connect() as conn:
            rows = conn.execute(text("SELECT id, event_id FROM interactions ORDER BY id")).all()
            pk = conn.execute(
                text(
                    "SELECT count(*) FROM pg_constraint WHERE conrelid = 'interactions'::regclass AND contype = 'p'"
                )
            ).scalar_one()
        assert [tuple(r) for r in rows] == [(1, "e1"), (3, None), (4, None)]  # the oldest e1 is kept
        assert pk == 0
        migrate.downgrade(scratch_url, "0004_item_search")
        with eng.connect() as conn:
            keys = conn.execute(text("SELECT count(DISTINCT event_key) FROM interactions")).scalar_one()
        assert keys == 3
    finally:
        eng.dispose()


def test_upgrade_from_0002_keeps_events_and_infers_the_schema(scratch_url: str) -> None:
    migrate.upgrade(scratch_url, "0002")
    eng = create_engine(scratch_url)
    try:
        with eng.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO items (external_id, content_hash, attributes) VALUES"
                    " ('a', 'h', '{\"price\": 1.5, \"tags\": [\"x\"]}'),"
                    " ('b', 'h', '{\"price\": 2, \"brand\": \"acme\"}'),"
                    " ('c', 'h', '{\"price\": 3}')"
                )
            )
            conn.execute(text("INSERT INTO users (external_id) VALUES ('u')"))
            conn.execute(
                text(
                    "INSERT INTO interactions (user_id, item_id, occurred_at, event_id) VALUES"
                    " (1, 1, now(), 'e1'), (1, 2, now(), NULL), (1, 2, now(), NULL)"
                )
            )
        migrate.upgrade(scratch_url)
        with eng.connect() as conn:
            schema = dict(
                conn.execute(text("SELECT name, type FROM attribute_schema WHERE entity = 'item'")).all()
            )
            keys = conn.execute(text("SELECT count(DISTINCT event_key) FROM interactions")).scalar_one()
        assert schema == {"price": "float", "tags": "list", "brand": "string"}
        assert keys == 3
    finally:
        eng.dispose()


def test_0009_adds_the_stored_cf_columns_and_its_downgrade_drops_them(scratch_url: str) -> None:
    migrate.upgrade(scratch_url, "0008_user_refresh_claims")
    eng = create_engine(scratch_url)
    try:
        with eng.begin() as conn:
            conn.execute(text("INSERT INTO users (external_id) VALUES ('u')"))
        migrate.upgrade(scratch_url)
        with eng.begin() as conn:
            conn.execute(
                text(
                    "UPDATE users SET cf_tag = 't', cf_indices = '{3, 5000000000}',"
                    " cf_vector = CAST(:v AS double precision[])"
                ),
                {"v": [0.1, float(np.float32(0.1))]},
            )
            row = conn.execute(text("SELECT cf_tag, cf_indices, cf_vector FROM users")).one()
        assert tuple(row) == ("t", [3, 5_000_000_000], [0.1, float(np.float32(0.1))])  # exact
        migrate.downgrade(scratch_url, "0008_user_refresh_claims")
        columns = {c["name"] for c in inspect(eng).get_columns("users")}
        assert not columns & {"cf_tag", "cf_indices", "cf_vector"} and "profile" in columns
        with eng.connect() as conn:
            assert conn.execute(text("SELECT external_id FROM users")).scalar_one() == "u"
    finally:
        eng.dispose()
