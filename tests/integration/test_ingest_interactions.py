"""User and interaction ingestion on a real Postgres: unknown users/items, event ids, timestamps, outbox."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from nearrec.cli.main import cli
from nearrec.ingest import values as v
from nearrec.ingest.records import InteractionOptions
from nearrec.ingest.service import ingest_interactions, numbered
from nearrec.postgres.engine import transaction


def run(database_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"NEARREC_DATABASE_URL": database_url})


def query(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def outbox(engine: Engine) -> list[tuple[str, int, str]]:
    return query(engine, "SELECT entity, entity_id, op FROM sync_outbox ORDER BY id")


def load_catalog(database_url: str, tmp_path: Path, *ids: str) -> None:
    path = tmp_path / "catalog.csv"
    path.write_text("id,title\n" + "".join(f"{i},Item {i}\n" for i in ids), encoding="utf-8")
    assert run(database_url, "ingest", "items", str(path)).exit_code == 0


def test_users_upsert_and_profile_change_enqueues_once(db: Engine, database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("id,profile,country,age\nu1,Likes jazz,FR,31\nu2,,DE,\n", encoding="utf-8")
    result = run(database_url, "ingest", "users", str(path), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["inserted"] == 2
    rows = query(db, "SELECT external_id, profile, attributes FROM users ORDER BY external_id")
    assert rows == [("u1", "Likes jazz", {"country": "FR", "age": 31}), ("u2", None, {"country": "DE"})]
    assert len(outbox(db)) == 2
    with db.begin() as conn:
        conn.execute(text("DELETE FROM sync_outbox"))
    assert json.loads(run(database_url, "ingest", "users", str(path), "--json").stdout)["unchanged"] == 2
    assert outbox(db) == []
    path.write_text("id,profile,country,age\nu1,Likes jazz and blues,FR,31\nu2,,DE,\n", encoding="utf-8")
    summary = json.loads(run(database_url, "ingest", "users", str(path), "--json").stdout)
    assert (summary["updated"], summary["unchanged"]) == (1, 1)
    u1 = query(db, "SELECT id FROM users WHERE external_id = 'u1'")[0][0]
    assert outbox(db) == [("user", u1, "upsert")]


def test_interactions_create_unknown_users_and_reject_unknown_items(
    db: Engine, database_url: str, tmp_path: Path
) -> None:
    load_catalog(database_url, tmp_path, "i1", "i2")
    with db.begin() as conn:
        conn.execute(text("DELETE FROM sync_outbox"))
    path = tmp_path / "events.csv"
    path.write_text(
        "user_id,item_id,type,value,timestamp,event_id\n"
        "u1,i1,view,,2024-03-01T12:00:00Z,e1\n"
        "u1,i9,click,,1709294400,e2\n"  # unknown item
        "u2,i2,rating,4,1709294400000,e3\n"
        "u3,i9,view,,,e4\n",  # unknown item: u3 must not be created
        encoding="utf-8",
    )
    rejects = tmp_path / "rejects.jsonl"
    result = run(database_url, "ingest", "interactions", str(path), "--rejects", str(rejects), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["read"], summary["inserted"], summary["rejected"], summary["users_created"]) == (
        4,
        2,
        2,
        2,
    )
    lines = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in lines] == [(3, "item_id"), (5, "item_id")]
    assert "unknown item 'i9'" in lines[0]["reason"] and lines[0]["file"] == str(path)
    assert "rejected: " in result.stderr and ":3: item_id: unknown item" in result.stderr
    assert sorted(r[0] for r in query(db, "SELECT external_id FROM users")) == ["u1", "u2"]
    rows = query(
        db,
        "SELECT u.external_id, i.external_id, it.type, it.value, it.occurred_at FROM interactions it"
        " JOIN users u ON u.id = it.user_id JOIN items i ON i.id = it.item_id ORDER BY it.id",
    )
    noon = datetime(2024, 3, 1, 12, tzinfo=UTC)
    assert rows == [("u1", "i1", "view", None, noon), ("u2", "i2", "rating", 4.0, noon)]
    user_ids = {r[0] for r in query(db, "SELECT id FROM users")}
    assert sorted(outbox(db)) == sorted(("user", u, "upsert") for u in user_ids)


def test_create_missing_items_makes_inactive_placeholders(
    db: Engine, database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"user_id": 1, "item_id": 10}\n{"user_id": 2, "item_id": 10}\n', encoding="utf-8")
    result = run(database_url, "ingest", "interactions", str(path), "--create-missing-items", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["inserted"], summary["items_created"], summary["users_created"]) == (2, 1, 2)
    assert query(db, "SELECT external_id, text, active, content_hash FROM items") == [
        ("10", "", False, v.EMPTY_TEXT_HASH)
    ]
    assert {e for e, _, _ in outbox(db)} == {"user"}  # placeholders have nothing to embed
    # the catalog file later describes the item: it becomes active and is enqueued
    load_catalog(database_url, tmp_path, "10")
    assert query(db, "SELECT title, active FROM items") == [("Item 10", True)]
    assert ("item", query(db, "SELECT id FROM items")[0][0], "upsert") in outbox(db)


def test_repeated_event_ids_are_ignored(db: Engine, database_url: str, tmp_path: Path) -> None:
    load_catalog(database_url, tmp_path, "i1")
    path = tmp_path / "events.csv"
    path.write_text(
        "user_id,item_id,event_id,type\nu1,i1,e1,view\nu1,i1,e1,like\nu1,i1,,view\nu1,i1,,view\n",
        encoding="utf-8",
    )
    summary = json.loads(run(database_url, "ingest", "interactions", str(path), "--json").stdout)
    assert (summary["inserted"], summary["unchanged"]) == (3, 1)
    assert query(db, "SELECT type FROM interactions WHERE event_id = 'e1'") == [
        ("view",)
    ]  # the first one wins
    # re-loading the same file changes nothing: the untimed repeats are told apart by their occurrence
    summary = json.loads(run(database_url, "ingest", "interactions", str(path), "--json").stdout)
    assert (summary["inserted"], summary["unchanged"]) == (0, 4)
    assert query(db, "SELECT count(*) FROM interactions") == [(3,)]


def test_user_refresh_is_coalesced_with_pending_work(db: Engine, database_url: str, tmp_path: Path) -> None:
    load_catalog(database_url, tmp_path, "i1", "i2")
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id\n" + "u1,i1\nu2,i2\n" * 10, encoding="utf-8")
    result = run(database_url, "ingest", "interactions", str(path), "--batch-size", "3", "--json")
    assert json.loads(result.stdout)["inserted"] == 20
    users = [r for r in outbox(db) if r[0] == "user"]
    assert len(users) == 2  # one pending refresh per user, not one per batch
    with db.begin() as conn:  # a worker claimed u1's row and failed once: it is no longer "pending"
        conn.execute(text("UPDATE sync_outbox SET attempts = 1 WHERE entity = 'user'"))
    path.write_text("user_id,item_id\n" + "u1,i1\nu2,i2\n" * 11, encoding="utf-8")  # one more of each
    assert (
        json.loads(run(database_url, "ingest", "interactions", str(path), "--json").stdout)["inserted"] == 2
    )
    assert len([r for r in outbox(db) if r[0] == "user"]) == 4


def test_missing_timestamp_is_now_and_abort_rolls_back(
    db: Engine, database_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with transaction(sessions) as session:
        session.execute(text("INSERT INTO items (external_id, text, content_hash) VALUES ('i1', 'x', 'h')"))
    before = datetime.now(UTC)
    with transaction(sessions) as session:
        summary = ingest_interactions(
            session, numbered([{"user_id": "u", "item_id": "i1"}]), InteractionOptions()
        )
    assert summary.inserted == 1
    (when,) = query(db, "SELECT occurred_at FROM interactions")[0]
    assert before - timedelta(seconds=5) <= when <= datetime.now(UTC) + timedelta(seconds=5)

    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id\nu5,i1\nu6,nope\n", encoding="utf-8")
    result = run(database_url, "ingest", "interactions", str(path), "--on-error", "abort")
    assert result.exit_code == 1
    assert ":3: item_id: unknown item 'nope'" in result.stderr and "nothing was loaded" in result.stderr
    assert query(db, "SELECT count(*) FROM interactions") == [(1,)]
    assert query(db, "SELECT count(*) FROM users WHERE external_id IN ('u5', 'u6')") == [(0,)]


@pytest.mark.slow
def test_movielens_interactions(db: Engine, database_url: str, shared_dir: Path) -> None:
    base = shared_dir / "datasets" / "movielens-100k"
    assert run(database_url, "ingest", "items", str(base / "items.csv")).exit_code == 0
    result = run(database_url, "ingest", "users", str(base / "users.csv"), "--id-column", "user_id", "--json")
    assert json.loads(result.stdout)["inserted"] == 943
    result = run(
        database_url, "ingest", "interactions", str(base / "interactions.csv"), "--type", "rating", "--json"
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # 15 ratings of the two items whose year is not a number (rejected when the items were loaded)
    assert (summary["inserted"], summary["users_created"], summary["rejected"]) == (99_985, 0, 15)
    assert query(db, "SELECT count(DISTINCT type), min(occurred_at) > '1997-01-01' FROM interactions") == [
        (1, True)
    ]


def test_refresh_is_enqueued_again_while_a_worker_holds_the_pending_row(
    db: Engine, database_url: str, tmp_path: Path
) -> None:
    load_catalog(database_url, tmp_path, "i1")
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id\nu1,i1\n", encoding="utf-8")
    run(database_url, "ingest", "interactions", str(path))
    assert len([r for r in outbox(db) if r[0] == "user"]) == 1
    path.write_text("user_id,item_id\nu1,i1\nu1,i1\n", encoding="utf-8")  # a second event
    with db.connect() as worker:  # a worker has claimed the row and is computing the vector
        worker.execute(text("SELECT id FROM sync_outbox WHERE entity = 'user' FOR UPDATE SKIP LOCKED")).one()
        run(database_url, "ingest", "interactions", str(path))  # must not wait for, nor rely on, that row
        worker.rollback()
    assert len([r for r in outbox(db) if r[0] == "user"]) == 2
