"""The Alembic migrations against a real Postgres: up, down, and agreement with the models."""

from __future__ import annotations

from collections.abc import Iterator

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
    insert_event = text(
        "INSERT INTO interactions (user_id, item_id, occurred_at, event_id, event_key)"
        " VALUES (1, 1, now(), 'e1', md5('e1')::uuid)"
    )
    with db.begin() as conn:
        conn.execute(text("INSERT INTO items (external_id, content_hash) VALUES ('a', 'h')"))
        conn.execute(text("INSERT INTO users (external_id) VALUES ('u')"))
        conn.execute(insert_event)
    with pytest.raises(Exception, match="uq_items_external_id"), db.begin() as conn:
        conn.execute(text("INSERT INTO items (external_id, content_hash) VALUES ('a', 'h2')"))
    with pytest.raises(Exception, match="uq_interactions_event_key"), db.begin() as conn:
        conn.execute(insert_event)
    with pytest.raises(Exception, match="ck_attribute_schema_type"), db.begin() as conn:
        conn.execute(text("INSERT INTO attribute_schema (entity, name, type) VALUES ('item', 'x', 'money')"))


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
