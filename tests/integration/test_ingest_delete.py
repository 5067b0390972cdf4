"""`nearrec delete users|items`: rows and interactions go, the vectors follow through the outbox."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, text

from nearrec.cli.main import cli


def run(database_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"NEARREC_DATABASE_URL": database_url})


def query(engine: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


@pytest.fixture
def loaded(db: Engine, database_url: str, tmp_path: Path) -> dict[str, int]:
    """Items i1, i2; users u1 (i1, i2), u2 (i1), u3 (i2); an empty outbox. Returns external -> internal id."""
    items = tmp_path / "items.csv"
    items.write_text("id,title\ni1,One\ni2,Two\n", encoding="utf-8")
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id\nu1,i1\nu1,i2\nu2,i1\nu3,i2\n", encoding="utf-8")
    assert run(database_url, "ingest", "items", str(items)).exit_code == 0
    assert run(database_url, "ingest", "interactions", str(events)).exit_code == 0
    with db.begin() as conn:
        conn.execute(text("DELETE FROM sync_outbox"))
    ids = query(db, "SELECT external_id, id FROM items UNION ALL SELECT external_id, id FROM users")
    return {e: i for e, i in ids}


def test_delete_user_removes_user_interactions_and_enqueues_vector_deletion(
    db: Engine, database_url: str, loaded: dict[str, int]
) -> None:
    result = run(database_url, "delete", "users", "u1", "ghost", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "kind": "users",
        "deleted": ["u1"],
        "unknown": ["ghost"],
        "users_enqueued": 0,
    }
    assert "unknown users (1): ghost" in result.stderr
    assert query(db, "SELECT external_id FROM users ORDER BY 1") == [("u2",), ("u3",)]
    assert query(db, "SELECT count(*) FROM interactions WHERE user_id = :u", u=loaded["u1"]) == [(0,)]
    assert query(db, "SELECT count(*) FROM interactions") == [(2,)]
    assert query(db, "SELECT entity, entity_id, op FROM sync_outbox") == [("user", loaded["u1"], "delete")]


def test_delete_items_cascades_and_refreshes_affected_users(
    db: Engine, database_url: str, loaded: dict[str, int], tmp_path: Path
) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("i1\n\n", encoding="utf-8")
    result = run(database_url, "delete", "items", "--ids-file", str(ids_file))
    assert result.exit_code == 0, result.output
    assert "deleted 1 items" in result.stdout and "2 users queued" in result.stdout
    assert query(db, "SELECT external_id FROM items") == [("i2",)]
    outbox = set(query(db, "SELECT entity, entity_id, op FROM sync_outbox"))
    assert outbox == {
        ("item", loaded["i1"], "delete"),
        ("user", loaded["u1"], "upsert"),
        ("user", loaded["u2"], "upsert"),
    }
    assert query(db, "SELECT count(*) FROM interactions") == [(2,)]


def test_delete_unknown_ids_only_fails(db: Engine, database_url: str, loaded: dict[str, int]) -> None:
    result = run(database_url, "delete", "items", "nope", "nada")
    assert result.exit_code == 1
    assert "unknown items (2): nope, nada" in result.stderr
    assert query(db, "SELECT count(*) FROM sync_outbox") == [(0,)]
    assert run(database_url, "delete", "users").exit_code == 2  # no id at all is a usage error
