"""The fast path of item CSV files against the row path, on a real Postgres: the same items stored, the same
rejections (line, field, reason), the same counts, on a file with every kind of row the row path handles."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from conftest import truncate_all
from nearrec.ingest import item_write, loader
from nearrec.ingest.item_batches import ItemBatches
from nearrec.ingest.loader import LoadPlan, load
from nearrec.ingest.records import ItemOptions
from nearrec.ingest.schema import Schema
from nearrec.ingest.service import ingest_items, numbered
from nearrec.ingest.summary import Summary
from nearrec.postgres.engine import transaction

ROWS = [
    "id,title,description,price,in_stock,tags,zip\n",
    'a,Alpha,"First line\nsecond line",12.5,true,x|y,01234\n',  # a quoted field over two lines
    "b,Beta,Desc,abc,false,y,02000\n",  # price is not a number
    "c,Gamma,,30,maybe,z| |w,03000\n",  # in_stock is not a boolean
    ",NoId,Desc,1,true,x,04000\n",  # no id
    "d,,,2,true,x,05000\n",  # no text at all
    "e,Nul\x00Title,Body\x00,3,true,x\x00y,06000\n",  # NUL characters: stripped and counted
    "f,Bad \xff byte,Desc,4,true,x,07000\n",  # not UTF-8
    "g,Short,row\n",  # too few fields
    "h,Trailing,Desc,5,true,x,08000,,\n",  # a delimiter at the end of the line: kept
    "a,Alpha again,Later row wins,13,true,x,09000\n",  # the same id again: the last row wins
    "  i  ,  Spaced  ,  Desc  ,  6  ,  TRUE  ,  p | q  ,  10000  \n",  # spaces around every cell
    'j,"Quote ""inside""",Desc with, comma,7,true,x,11000\n',  # too many fields (unquoted comma)
    "k,Long," + "w" * 120 + ",8,true,x,12000\n",  # past the text limit below
    "l,Title,Title and more,9,false,,13000\n",  # the body starts with the title: the title is dropped
    "\n",  # a blank line
    "m,Last,Desc,10.0,true,x,14000\n",
]


def load_with(
    engine: Engine,
    path: Path,
    fast: bool,
    monkeypatch: pytest.MonkeyPatch,
    types: dict[str, str] | None = None,
) -> Summary:
    monkeypatch.setattr(loader, "_fast", lambda plan, p: fast)
    options = ItemOptions(list_columns=frozenset({"tags"}), max_text_chars=100, types=types or {})
    return load(engine, LoadPlan("items", [path], options, batch_size=100))  # one batch, either path


def stored(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        items = conn.execute(
            text("SELECT external_id, title, text, attributes, active, content_hash FROM items ORDER BY 1")
        ).all()
        schema = conn.execute(text("SELECT name, type FROM attribute_schema ORDER BY 1")).all()
        queued = conn.execute(text("SELECT count(*) FROM sync_outbox")).scalar_one()
    return [*(tuple(r) for r in items), *(tuple(r) for r in schema), ("queued", queued)]


# Declared types: the fast path types the batch by columns (else it infers them through the row path).
@pytest.mark.parametrize("types", [None, {"price": "float", "in_stock": "bool", "zip": "string"}])
def test_the_fast_path_stores_and_rejects_as_the_row_path(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, types: dict[str, str] | None
) -> None:
    path = tmp_path / "items.csv"
    path.write_bytes("".join(ROWS).encode("utf-8").replace("\xff".encode(), b"\xff"))
    outcome: dict[bool, tuple[Any, ...]] = {}
    for fast in (False, True):
        truncate_all(db)
        summary = load_with(db, path, fast, monkeypatch, types)
        counts = summary.to_dict() | {"seconds": 0, "rows_per_second": 0}
        rejections = [(r.line, r.field, r.reason, r.id) for r in summary.rejections]
        outcome[fast] = (counts, rejections, stored(db))
    assert outcome[True] == outcome[False]
    counts, rejections, rows = outcome[True]
    assert (counts["inserted"], counts["unchanged"], counts["rejected"], counts["nul_stripped"]) == (
        6,
        1,
        8,
        3,
    )
    assert [line for line, *_ in rejections] == [4, 5, 6, 7, 9, 10, 14, 15]
    assert rows[0][:3] == ("a", "Alpha again", "Alpha again. Later row wins")


# Every attribute in the schema already: the fast path types these columns by pyarrow compute, and sends
# any row whose value is not in a plain form (or holds a control character) through the row path.
TYPED_ROWS = [
    "id,title,description,price,in_stock,qty,tags,note\n",
    "a,Alpha,Body,12.50,true,3,x|y,plain\n",
    'b,Beta,Body,1e5,True,-7,"a | b ||","say ""hi"" \\ back"\n',  # quotes and a backslash in JSON
    "c,Gamma,Body,+1.5,FALSE,+5,x,tab\there\n",  # +5 is an int for the row path; a tab in a string
    "d,Delta,Body,.5,1,007,,\n",  # 1 is true; 007 is not an integer: rejected (qty)
    "e,Epsilon,Body,1e999,true,1,x,\n",  # not a finite number: rejected
    "f,\u3000Zeta\u3000,\u00a0Body\u00a0,2,true,1,x,\n",  # Unicode spaces are stripped
    'g,Eta,Body,-0,false,0,|||,\u00fcn\u00ef "code"\n',  # no tag left: no tags attribute
    "h,Theta,Theta is here,3.0,true,12345678901234567890,x,\n",  # past 64 bits: rejected
    "i,Iota,Body,5,yes,2,x,\n",  # not a boolean: rejected
    "j,Kappa.,Body,6,true,3,x,\n",  # no second period after the title
    "k,,Only body,7,true,4,x, \n",
    "l,Lambda,,8,true,5,x,\n",
    'm,Mu,Body,9,true,6,x,"two\nlines"\n',
    'n,Nu,Body,10,true,7,"a\\b|c""d",x\n',
    "o,Omicron,Body,1_000,true,8,x,\n",  # not a number for the row path either: rejected
    "p, ,Body,11,true,9,x,\n",  # a blank title
    " ,Rho,Body,12,true,10,x,\n",  # no id: rejected
]


def test_the_fast_path_types_columns_as_the_row_path(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "typed.csv"
    path.write_text("".join(TYPED_ROWS), encoding="utf-8")
    types = {"price": "float", "in_stock": "bool", "qty": "int", "note": "string"}
    options = ItemOptions(list_columns=frozenset({"tags"}), types=types)
    outcome: dict[bool, tuple[Any, ...]] = {}
    for fast in (False, True):
        truncate_all(db)
        monkeypatch.setattr(loader, "_fast", lambda plan, p, fast=fast: fast)
        summary = load(db, LoadPlan("items", [path], options, batch_size=100))
        counts = summary.to_dict() | {"seconds": 0, "rows_per_second": 0}
        rejections = [(r.line, r.field, r.reason, r.id) for r in summary.rejections]
        outcome[fast] = (counts, rejections, stored(db))
    assert outcome[True] == outcome[False]
    counts, rejections, rows = outcome[True]
    assert [(line, field) for line, field, *_ in rejections] == [
        (5, "qty"), (6, "price"), (9, "qty"), (10, "in_stock"), (17, "price"), (19, "id")
    ]  # fmt: skip
    by_id = {row[0]: row for row in rows if len(row) == 6}
    assert by_id["b"][3] == {"price": 100000.0, "in_stock": True, "qty": -7, "tags": ["a", "b"],
                             "note": 'say "hi" \\ back'}  # fmt: skip
    assert by_id["f"][1:3] == ("Zeta", "Zeta. Body")
    assert by_id["j"][2] == "Kappa. Body"
    assert by_id["n"][3]["tags"] == ["a\\b", 'c"d']
    assert "tags" not in by_id["g"][3]
    assert by_id["p"][1:3] == (None, "Body")


def test_a_reload_through_the_fast_path_changes_nothing(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "items.csv"
    path.write_text(
        "id,title,price\n" + "".join(f"i{k},Item {k},{k}.5\n" for k in range(30)), encoding="utf-8"
    )
    first = load_with(db, path, True, monkeypatch)
    assert (first.inserted, first.enqueued) == (30, 30)
    again = load_with(db, path, True, monkeypatch)
    assert (again.inserted, again.updated, again.unchanged, again.enqueued) == (0, 0, 30, 0)
    path.write_text(path.read_text().replace("Item 7,", "Item seven,") + "i99,New,1\n", encoding="utf-8")
    changed = load_with(db, path, True, monkeypatch)
    assert (changed.inserted, changed.updated, changed.unchanged) == (1, 1, 29)


def test_a_batch_that_meets_a_stored_item_is_looked_up_and_the_next_ones_copied_again(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One load, one batch per file: the second file's COPY meets i3 (from the first file), so that batch is
    looked up (i3 updated, the others COPYed); the third is COPYed without a lookup."""
    files = []
    for k, ids in enumerate([range(0, 10), [*range(10, 15), 3, *range(15, 20)], range(20, 30)]):
        files.append(tmp_path / f"items{k}.csv")
        title = "Renamed" if k == 1 else "Item"
        files[-1].write_text("id,title\n" + "".join(f"i{i},{title} {i}\n" for i in ids), encoding="utf-8")
    monkeypatch.setattr(loader, "_fast", lambda plan, p: True)
    summary = load(db, LoadPlan("items", files, ItemOptions(), batch_size=100))
    assert (summary.inserted, summary.updated, summary.unchanged, summary.enqueued) == (30, 1, 0, 31)
    with db.connect() as conn:
        titles = {e: t for e, t in conn.execute(text("SELECT external_id, title FROM items"))}
        queued = conn.execute(
            text(
                "SELECT count(*), count(DISTINCT o.entity_id) FROM sync_outbox AS o JOIN items AS i ON i.id = o.entity_id"
            )
        ).one()
    assert len(titles) == 30 and titles["i3"] == "Renamed 3" and titles["i12"] == "Renamed 12"
    assert tuple(queued) == (31, 30)  # every item enqueued, i3 twice


def test_a_copy_that_meets_an_item_stored_meanwhile_falls_back_to_the_upsert(
    db: Engine, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """Another load holds item i1 uncommitted: our COPY of i1 and i2 waits, fails when it commits, and the
    batch goes through the staged upsert (i1 updated, i2 inserted, one outbox row each)."""
    path = tmp_path / "items.csv"
    path.write_text("id,title\ni1,One renamed\ni2,Two\n", encoding="utf-8")
    (batch,) = ItemBatches(
        path, ",", ItemOptions(), Schema("item"), encoding="utf-8", on_error="skip", batch_rows=10
    )
    with sessions() as hold:
        assert ingest_items(hold, numbered([{"id": "i1", "title": "One"}]), ItemOptions()).inserted == 1
        out: list[Summary] = []

        def ours() -> None:
            with transaction(sessions) as session:
                out.append(item_write.write(session, batch, track_seen=False))

        worker = threading.Thread(target=ours)
        worker.start()
        worker.join(1.0)
        assert worker.is_alive(), "our COPY should wait for the uncommitted item"
        hold.commit()
        worker.join(30)
    (summary,) = out
    assert (summary.inserted, summary.updated, summary.enqueued) == (1, 1, 2)
    with db.connect() as conn:
        titles = conn.execute(text("SELECT external_id, title FROM items ORDER BY 1")).all()
        queued = conn.execute(text("SELECT count(*) FROM sync_outbox")).scalar_one()
    assert [tuple(r) for r in titles] == [("i1", "One renamed"), ("i2", "Two")]
    assert queued == 3  # the other load's insert, our update of i1 and insert of i2


def test_batches_of_long_texts_end_at_a_bounded_size(tmp_path: Path) -> None:
    """Items of ~600 KB of text each: a batch ends at MAX_BATCH_BYTES, not at its row limit, and every row is
    read once."""
    from nearrec.ingest.csv_batches import MAX_BATCH_BYTES

    path = tmp_path / "articles.csv"
    body = "word " * 120_000
    with open(path, "w", encoding="utf-8") as f:
        f.write("id,title,body\n")
        for k in range(60):
            f.write(f"a{k},Article {k},{body}\n")
    batches = list(
        ItemBatches(
            path, ",", ItemOptions(), Schema("item"), encoding="utf-8", on_error="skip", batch_rows=5000
        )
    )
    assert sum(b.read for b in batches) == 60
    per_row = len(body)
    assert len(batches) >= 60 * per_row // MAX_BATCH_BYTES  # ~36 MB of text in 16 MB batches: three or more
    assert max(b.read for b in batches) * per_row <= MAX_BATCH_BYTES + 2 * (1 << 20)
