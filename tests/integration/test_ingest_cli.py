"""`nearrec ingest` as an admin sees it: messages, exit codes, --rejects, --on-error, summaries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, text

from nearrec.cli.main import cli


def run(database_url: str, *args: str, **env: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"NEARREC_DATABASE_URL": database_url, **env})


def count(engine: Engine, table: str) -> int:
    sql = {"items": "SELECT count(*) FROM items", "interactions": "SELECT count(*) FROM interactions",
           "outbox": "SELECT count(*) FROM sync_outbox"}[table]  # fmt: skip
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"sku,title\n1,x\n", "missing required column 'id' (found 'sku', 'title')"),
        (b"id,price\n1,3\n", "no text to embed"),
        (b"", "the file is empty"),
        (b"id,title\n", "header row but no records"),
        (b"id;title\n1;x\n", "is the delimiter ';'?"),
        (b"id,tit\xe9\n1,cafe\n", "items.csv:1: cannot decode the header row"),
    ],
)
def test_file_level_errors_load_nothing(
    db: Engine, database_url: str, tmp_path: Path, content: bytes, message: str
) -> None:
    good = tmp_path / "good.csv"
    good.write_text("id,title\nok,Fine\n", encoding="utf-8")
    bad = tmp_path / "items.csv"
    bad.write_bytes(content)
    result = run(database_url, "ingest", "items", str(good), str(bad))  # the good file is checked first
    assert result.exit_code == 1
    assert message in result.stderr
    assert "nothing was loaded" in result.stderr
    assert count(db, "items") == 0


def test_row_rejections_are_reported_and_good_rows_loaded(
    db: Engine, database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "user_id,item_id,value,timestamp\n"
        "u1,i1,4,1709294400\n"
        "u1,i1,four,1709294400\n"
        "u1,i1,4,yesterday\n"
        ",i1,4,1709294400\n"
        "u1,i1,4\n",
        encoding="utf-8",
    )
    catalog = tmp_path / "items.csv"
    catalog.write_text("id,title\ni1,One\n", encoding="utf-8")
    assert run(database_url, "ingest", "items", str(catalog)).exit_code == 0
    rejects = tmp_path / "rejects.jsonl"
    result = run(database_url, "ingest", "interactions", str(path), "--rejects", str(rejects))
    assert result.exit_code == 0, result.output
    assert "interactions: read 5, inserted 1, updated 0, unchanged 0, rejected 4" in result.stdout
    assert "rows/s" in result.stdout
    got = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in got] == [
        (3, "value"),
        (4, "timestamp"),
        (5, "user_id"),
        (6, None),
    ]
    assert "'four' is not a number" in got[0]["reason"]
    assert "not an ISO 8601 date-time" in got[1]["reason"]
    assert got[3]["reason"] == "expected 4 fields, found 3"
    assert f"{path}:3: value: 'four' is not a number" in result.stderr
    assert count(db, "interactions") == 1


def test_oversized_text_is_rejected(db: Engine, database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps({"id": "big", "title": "Big", "text": "x" * 500}) + "\n" +
                    json.dumps({"id": "ok", "title": "Small"}) + "\n", encoding="utf-8")  # fmt: skip
    result = run(database_url, "ingest", "items", str(path), "--json", NEARREC_MAX_TEXT_CHARS="100")
    assert json.loads(result.stdout)["rejected"] == 1
    assert "items.jsonl:1: text: text is 505 characters; the limit is 100" in result.stderr
    assert count(db, "items") == 1


def test_all_rows_rejected_exits_non_zero(db: Engine, database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("id,title\n,x\n,y\n", encoding="utf-8")
    result = run(database_url, "ingest", "items", str(path), "--quiet")
    assert result.exit_code == 1
    assert "no valid rows" in result.stderr
    assert "rejected:" not in result.stderr  # --quiet
    assert (
        "... 2 rejected rows (write them all with --rejects FILE)" in result.stderr
    )  # none shown: no "more"


def test_abort_mode_loads_nothing(db: Engine, database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    rows = "".join(f"{i},Item {i}\n" for i in range(50)) + "bad,\n"
    path.write_text("id,title\n" + rows, encoding="utf-8")
    rejects = tmp_path / "rejects.jsonl"
    args = [
        "ingest",
        "items",
        str(path),
        "--on-error",
        "abort",
        "--batch-size",
        "10",
        "--rejects",
        str(rejects),
    ]
    result = run(database_url, *args)
    assert result.exit_code == 1
    assert "items.csv:52: title: no text to embed" in result.stderr
    assert "nothing was loaded (--on-error abort)" in result.stderr
    assert count(db, "items") == 0 and count(db, "outbox") == 0
    assert json.loads(rejects.read_text())["line"] == 52
    # the same file in skip mode loads the 50 good rows
    result = run(database_url, "ingest", "items", str(path), "--batch-size", "10")
    assert result.exit_code == 0 and count(db, "items") == 50


def test_one_bad_utf8_row_is_rejected_and_the_others_load(
    db: Engine, database_url: str, tmp_path: Path
) -> None:
    for kind, header, row, bad in (
        ("items", "id,title", "{i},Item {i}", "x,caf\xe9"),
        ("interactions", "user_id,item_id", "u{i},{i}", "u\xe9,1"),
    ):
        path = tmp_path / f"{kind}.csv"
        lines = [row.format(i=i).encode() for i in range(3000)]
        lines.insert(3, bad.encode("latin-1"))
        path.write_bytes(header.encode() + b"\n" + b"\n".join(lines) + b"\n")
        result = run(database_url, "ingest", kind, str(path), "--batch-size", "1000", "--json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert (summary["read"], summary["rejected"]) == (3001, 1)
        assert (
            f"{kind}.csv:5: " in result.stderr and "0xe9" in result.stderr and "--encoding" in result.stderr
        )


def test_a_file_in_another_encoding_stops_with_the_encoding_hint(
    db: Engine, database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "items.csv"
    path.write_bytes(b"id,title\n" + b"".join(b"%d,Caf\xe9 %d\n" % (i, i) for i in range(3000)))
    result = run(database_url, "ingest", "items", str(path), "--batch-size", "1000", "--json")
    assert result.exit_code == 1
    assert "--encoding latin-1" in json.loads(result.stdout)["error"]
    result = run(database_url, "ingest", "items", str(path), "--encoding", "latin-1", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["inserted"] == 3000
    with db.connect() as conn:
        assert conn.execute(text("SELECT title FROM items WHERE external_id = '7'")).scalar_one() == "Café 7"


def test_interactions_note_ignored_columns_and_format_option(
    db: Engine, database_url: str, tmp_path: Path
) -> None:
    catalog = tmp_path / "items.csv"
    catalog.write_text("id,title\ni1,One\n", encoding="utf-8")
    run(database_url, "ingest", "items", str(catalog))
    path = tmp_path / "events.data"
    path.write_text('{"user_id": "u1", "item_id": "i1", "session": "s"}\n', encoding="utf-8")
    result = run(database_url, "ingest", "interactions", str(path))
    assert result.exit_code == 1 and "--format" in result.stderr
    result = run(database_url, "ingest", "interactions", str(path), "--format", "jsonl")
    assert result.exit_code == 0, result.output
    assert "note: " in result.stderr and "ignored columns: session" in result.stderr


def test_semicolon_latin1_file(db: Engine, database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "items.txt"
    path.write_bytes("id;title;price\n1;Crème brûlée;4,50\n".encode("latin-1"))
    result = run(database_url, "ingest", "items", str(path), "--delimiter", ";", "--encoding", "latin-1")
    assert result.exit_code == 0, result.output
    with db.connect() as conn:
        row: Any = conn.execute(text("SELECT title, attributes FROM items")).one()
    assert row.title == "Crème brûlée"
    assert row.attributes == {"price": "4,50"}  # a decimal comma is not a number: kept as text


def test_missing_schema_is_explained(tmp_path: Path, database_url: str) -> None:
    from sqlalchemy.engine import make_url

    from nearrec.postgres.scratch import scratch_database

    name = f"{make_url(database_url).database}_empty"
    with scratch_database(database_url, name, migrate=False) as url:
        path = tmp_path / "items.csv"
        path.write_text("id,title\n1,x\n", encoding="utf-8")
        result = run(url, "ingest", "items", str(path))
        assert result.exit_code == 2  # a configuration problem
        assert "nearrec db upgrade" in result.stderr
