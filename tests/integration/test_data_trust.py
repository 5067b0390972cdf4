"""Data you can trust, on a real Postgres: the attribute schema, idempotent events, lossless text, sane
timestamps and values, interaction types, and the guarantees that replace the foreign keys."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from nearrec.cli.main import cli
from nearrec.config import Settings
from nearrec.errors import ValidationError
from nearrec.ingest.options import interaction_options
from nearrec.ingest.service import delete_items, delete_users, ingest_interactions, numbered
from nearrec.postgres.engine import transaction
from nearrec.query.service import QueryService
from nearrec.vectors.edge import EdgeVectorStore


def run(database_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"NEARREC_DATABASE_URL": database_url})


def query(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def load(database_url: str, tmp_path: Path, kind: str, name: str, body: str | bytes, *args: str) -> Result:
    path = tmp_path / name
    if isinstance(body, bytes):
        path.write_bytes(body)
    else:
        path.write_text(body, encoding="utf-8")
    return run(database_url, "ingest", kind, str(path), "--json", *args)


CATALOG = (
    "id,title,price,in_stock,brand,tags\n"
    "a,Alpha,12.5,true,acme,x|y\n"
    "b,Beta,abc,false,acme,y\n"  # price is not a number
    "c,Gamma,30,maybe,zeta,z\n"  # in_stock is not a boolean
    "d,Delta,7,true,zeta,x\n"
    "e,Epsilon,99,false,acme,\n"
)


def test_a_bad_value_is_rejected_and_the_column_stays_filterable(
    db: Engine, database_url: str, settings: Settings, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    result = load(database_url, tmp_path, "items", "catalog.csv", CATALOG, "--list-columns", "tags")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["inserted"], summary["rejected"]) == (3, 2)
    assert "catalog.csv:3: price: expected a number (float), got 'abc'" in result.stderr
    assert "catalog.csv:4: in_stock: expected true or false (bool), got 'maybe'" in result.stderr
    store = EdgeVectorStore(tmp_path / "vectors")
    try:
        service = QueryService(sessions, store, settings)
        assert set(service.attribute_schema()) == {"price", "in_stock", "brand", "tags"}
        service.parse_filter({"price": {"gte": 10}, "in_stock": True, "tags": "x"})  # no error
        with pytest.raises(ValidationError, match="price: expected a number"):
            service.parse_filter({"price": "cheap"})
    finally:
        store.close()
    shown = run(database_url, "schema", "show", "items")
    assert shown.exit_code == 0
    assert [line.split()[:3] for line in shown.stdout.splitlines()[1:]] == [
        ["brand", "string", "3"],
        ["in_stock", "bool", "3"],
        ["price", "float", "3"],
        ["tags", "list", "2"],
    ]
    # a later file is checked against the stored schema (and may add attributes)
    result = load(
        database_url, tmp_path, "items", "more.csv", "id,title,price,color\nf,F,cheap,red\ng,G,5,blue\n"
    )
    assert (
        json.loads(result.stdout)["rejected"] == 1 and "more.csv:2: price: expected a number" in result.stderr
    )
    assert query(db, "SELECT attributes FROM items WHERE external_id = 'g'") == [
        ({"price": 5.0, "color": "blue"},)
    ]


def test_declared_types_win_over_inference(db: Engine, database_url: str, tmp_path: Path) -> None:
    body = "id,title,zip,code\na,A,01234,1\nb,B,12345,2\n"
    result = load(database_url, tmp_path, "items", "z.csv", body, "--types", "code=string")
    assert result.exit_code == 0, result.output
    rows = dict(query(db, "SELECT external_id, attributes FROM items"))
    assert rows["a"] == {"zip": "01234", "code": "1"}  # a leading zero keeps a column text
    result = load(database_url, tmp_path, "items", "z.csv", body, "--types", "code=int")
    assert result.exit_code == 1 and "nearrec schema set items code=int" in result.output


def test_schema_set_revalidates_stored_rows_and_drop_removes_the_filter(
    db: Engine, database_url: str, tmp_path: Path
) -> None:
    load(database_url, tmp_path, "items", "c.csv", "id,title,size,grade\na,A,10,1\nb,B,12,2\nc,C,M,3\n")
    assert dict(query(db, "SELECT name, type FROM attribute_schema")) == {"size": "int", "grade": "int"}
    with db.begin() as conn:
        conn.execute(text("DELETE FROM sync_outbox"))
    result = run(database_url, "schema", "set", "items", "grade=bool")
    assert result.exit_code == 1
    # (c was rejected at the load: its size is not an integer)
    assert (
        "grade=bool: 2 stored items do not fit: a (expected true or false (bool), got 1); b ("
        in result.output
    )
    assert "Nothing was changed" in result.output
    assert dict(query(db, "SELECT name, type FROM attribute_schema"))["grade"] == "int"
    result = run(database_url, "schema", "set", "items", "grade=float", "size=string")
    assert result.exit_code == 0, result.output
    rows = dict(query(db, "SELECT external_id, attributes FROM items"))
    assert rows["b"] == {"size": "12", "grade": 2.0} and isinstance(rows["b"]["grade"], float)
    queued = {r[0] for r in query(db, "SELECT entity_id FROM sync_outbox WHERE entity = 'item'")}
    assert queued == {r[0] for r in query(db, "SELECT id FROM items")}  # payloads changed: re-queued
    result = run(database_url, "schema", "set", "items", "--drop", "grade")
    assert result.exit_code == 0 and "removed from 2 items" in result.output
    assert query(db, "SELECT count(*) FROM items WHERE attributes ? 'grade'") == [(0,)]
    assert dict(query(db, "SELECT name, type FROM attribute_schema")) == {"size": "string"}


def test_identical_reload_adds_nothing(db: Engine, database_url: str, tmp_path: Path) -> None:
    load(database_url, tmp_path, "items", "i.csv", "id,title\ni1,One\ni2,Two\n")
    events = "user_id,item_id,type,timestamp\n" + "".join(
        f"u{k % 7},i{k % 2 + 1},view,{1_700_000_000 + k}\n" for k in range(2000)
    )
    events += "u1,i1,like,\nu1,i1,like,\nu1,i1,like,1700000000\nu1,i1,like,1700000000\n"
    first = json.loads(load(database_url, tmp_path, "interactions", "e.csv", events).stdout)
    # three untimed repeats count as events; the timed repeat is the same event
    assert (first["inserted"], first["unchanged"]) == (2003, 1)
    again = json.loads(load(database_url, tmp_path, "interactions", "e.csv", events).stdout)
    assert (again["inserted"], again["unchanged"]) == (0, 2004)
    assert query(db, "SELECT count(*) FROM interactions") == [(2003,)]
    # the same file as JSON Lines (the row path) derives the same keys
    lines = "".join(
        json.dumps({"user_id": f"u{k % 7}", "item_id": f"i{k % 2 + 1}", "type": "view",
                    "timestamp": 1_700_000_000 + k}) + "\n"
        for k in range(2000)
    )  # fmt: skip
    assert json.loads(load(database_url, tmp_path, "interactions", "e.jsonl", lines).stdout)["inserted"] == 0


def test_nul_characters_are_stripped_and_counted(db: Engine, database_url: str, tmp_path: Path) -> None:
    body = 'id,title,text,brand\na,Art\x00icle,"Body with one \x00 NUL",ac\x00me\n'
    result = load(database_url, tmp_path, "items", "n.csv", body)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["nul_stripped"] == 3
    assert query(db, "SELECT title, text, attributes FROM items") == [
        ("Article", "Article. Body with one  NUL", {"brand": "acme"})
    ]
    long_text = "word " * 30_000  # 150,000 characters: kept whole
    result = load(database_url, tmp_path, "items", "l.csv", f"id,title,text\nl,Long,{long_text}\n")
    assert json.loads(result.stdout)["inserted"] == 1
    assert query(db, "SELECT length(text) > 150000 FROM items WHERE external_id = 'l'") == [(True,)]


def test_unknown_types_future_timestamps_and_nan_are_rejected(
    db: Engine, database_url: str, tmp_path: Path
) -> None:
    load(database_url, tmp_path, "items", "i.csv", "id,title\ni1,One\n")
    body = (
        "user_id,item_id,type,value,timestamp\n"
        "u1,i1,view,,1700000000\n"
        "u2,i1,teleport,,1700000000\n"
        "u3,i1,view,,99999999999999\n"
        "u4,i1,view,NaN,1700000000\n"
        "u5,i1,rating,4,9999-12-31T23:59:59Z\n"
    )
    for name in ("e.csv", "e.jsonl"):
        if name.endswith(".jsonl"):
            with db.begin() as conn:
                conn.execute(text("TRUNCATE interactions, users"))
            rows = [line.split(",") for line in body.splitlines()[1:]]
            data = "".join(
                json.dumps({"user_id": u, "item_id": i, "type": t, "timestamp": ts})[:-1]
                + f', "value": {"NaN" if val == "NaN" else (val or "null")}}}\n'
                for u, i, t, val, ts in rows
            )
        else:
            data = body
        result = load(database_url, tmp_path, "interactions", name, data)
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert (summary["inserted"], summary["rejected"], summary["users_created"]) == (1, 4, 1), name
        err, n = result.stderr, 2 if name.endswith(".csv") else 1  # a CSV's line 1 is its header
        assert f":{n + 1}: type: unknown interaction type 'teleport' (known: click, dislike, like" in err
        assert (
            f":{n + 2}: timestamp: '99999999999999' is out of range: accepted from 1970-01-01T00:00:00Z"
            in err
        )
        assert f":{n + 3}: value:" in err and f":{n + 4}: timestamp: '9999-12-31T23:59:59Z' is out" in err
        assert query(db, "SELECT external_id FROM users") == [("u1",)]  # rejected events create nobody


def test_a_rejected_or_repeated_event_creates_nothing(
    db: Engine, database_url: str, sessions: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    load(database_url, tmp_path, "items", "i.csv", "id,title\ni1,One\n")
    options = interaction_options(settings)
    with transaction(sessions) as session:
        ingest_interactions(
            session, numbered([{"user_id": "u1", "item_id": "i1", "event_id": "e1"}]), options
        )
    with transaction(sessions) as session:
        summary = ingest_interactions(
            session,
            numbered([
                {"user_id": "u2", "item_id": "i1", "event_id": "e1"},  # taken: ignored, u2 not created
                {"user_id": "u3", "item_id": "nope"},  # unknown item: rejected, u3 not created
            ]),
            options,
        )  # fmt: skip
    assert (summary.inserted, summary.unchanged, summary.rejected, summary.users_created) == (0, 1, 1, 0)
    assert query(db, "SELECT external_id FROM users") == [("u1",)]
    assert query(db, "SELECT count(*) FROM items") == [(1,)]


def _orphans(engine: Engine) -> int:
    return int(
        query(
            engine,
            "SELECT count(*) FROM interactions AS i WHERE NOT EXISTS (SELECT 1 FROM users AS u WHERE u.id = i.user_id)"
            " OR NOT EXISTS (SELECT 1 FROM items AS t WHERE t.id = i.item_id)",
        )[0][0]
    )


def test_deleting_users_and_items_removes_their_history(
    db: Engine, database_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    load(database_url, tmp_path, "items", "i.csv", "id,title\ni1,One\ni2,Two\n")
    load(database_url, tmp_path, "interactions", "e.csv", "user_id,item_id\nu1,i1\nu1,i2\nu2,i2\n")
    with transaction(sessions) as session:
        assert delete_users(session, ["u1"]).deleted == ["u1"]
    assert query(db, "SELECT count(*) FROM interactions") == [(1,)]
    (u1,) = [r for r in query(db, "SELECT entity, op FROM sync_outbox WHERE op = 'delete'")]
    assert u1 == ("user", "delete")  # the vector goes through the outbox
    with db.begin() as conn:
        conn.execute(text("DELETE FROM sync_outbox"))
    with transaction(sessions) as session:
        result = delete_items(session, ["i2"])
    assert result.deleted == ["i2"] and result.users_enqueued == 1
    assert query(db, "SELECT count(*) FROM interactions") == [(0,)]
    assert _orphans(db) == 0


def test_a_delete_waits_for_inserts_in_flight_and_leaves_no_orphan(
    db: Engine, database_url: str, sessions: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    load(database_url, tmp_path, "items", "i.csv", "id,title\ni1,One\n")
    options = interaction_options(settings)
    loader = sessions()
    loader.begin()
    # an insert in flight: resolved i1 and wrote a row for it, not committed yet
    ingest_interactions(loader, numbered([{"user_id": "u1", "item_id": "i1"}]), options)
    done = threading.Event()

    def delete() -> None:
        with transaction(sessions) as session:
            delete_items(session, ["i1"])
        done.set()

    thread = threading.Thread(target=delete)
    thread.start()
    time.sleep(0.5)
    assert not done.is_set()  # the delete waits for the insert to commit ...
    loader.commit()
    loader.close()
    thread.join(timeout=30)
    assert done.is_set()
    assert query(db, "SELECT count(*) FROM interactions") == [(0,)]  # ... then removes what it wrote
    # and an insert after the delete finds no item: rejected, creates nobody
    with transaction(sessions) as session:
        summary = ingest_interactions(session, numbered([{"user_id": "u9", "item_id": "i1"}]), options)
    assert summary.rejected == 1 and _orphans(db) == 0
    assert query(db, "SELECT count(*) FROM users WHERE external_id = 'u9'") == [(0,)]
