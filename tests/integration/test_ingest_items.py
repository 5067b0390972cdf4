"""Item ingestion on a real Postgres: formats, typed attributes, idempotence, updates, prune."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from nearrec.cli.main import cli
from nearrec.ingest import values as v
from nearrec.ingest.records import ItemOptions
from nearrec.ingest.service import ingest_items, numbered
from nearrec.postgres.engine import transaction

ITEMS: list[dict[str, Any]] = [
    {"id": "sku-1", "title": "Red shoe", "description": "Light running shoe.", "price": 59.9, "in_stock": True,
     "tags": ["running", "red"]},
    {"id": "sku-2", "title": "Blue mug", "description": "Holds 300 ml", "price": 8, "in_stock": False,
     "tags": ["kitchen"]},
    {"id": "sku-3", "title": "Desk lamp", "description": "LED, warm light", "price": 24.5, "in_stock": True,
     "tags": []},
]  # fmt: skip


def run(database_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"NEARREC_DATABASE_URL": database_url})


def outbox(engine: Engine) -> list[tuple[str, int, str]]:
    with engine.connect() as conn:
        return [
            tuple(r) for r in conn.execute(text("SELECT entity, entity_id, op FROM sync_outbox ORDER BY id"))
        ]


def items(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, external_id, title, text, attributes, active, content_hash FROM items")
        )
        return {r.external_id: dict(r._mapping) for r in rows}


def clear_outbox(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM sync_outbox"))


def write_items(path: Path, records: list[dict[str, Any]]) -> Path:
    """Write records in the format the file name says (csv, tsv, jsonl, parquet; optionally .gz)."""
    name = path.name.removesuffix(".gz")
    if name.endswith((".csv", ".tsv")):
        delimiter = "\t" if name.endswith(".tsv") else ","
        body = _csv_text(records, delimiter)
        data = body.encode()
    elif name.endswith(".jsonl"):
        data = "".join(json.dumps(r) + "\n" for r in records).encode()
    else:
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(records), sink)
        data = sink.getvalue().to_pybytes()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def _csv_text(records: list[dict[str, Any]], delimiter: str) -> str:
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(records[0]), delimiter=delimiter, lineterminator="\n")
    writer.writeheader()
    for r in records:
        cells = {k: ("|".join(x) if isinstance(x, list) else str(x).lower() if isinstance(x, bool) else x)
                 for k, x in r.items()}  # fmt: skip
        writer.writerow(cells)
    return out.getvalue()


EXPECTED = {
    "sku-1": (
        "Red shoe",
        "Red shoe. Light running shoe.",
        {"price": 59.9, "in_stock": True, "tags": ["running", "red"]},
    ),
    "sku-2": ("Blue mug", "Blue mug. Holds 300 ml", {"price": 8, "in_stock": False, "tags": ["kitchen"]}),
    "sku-3": ("Desk lamp", "Desk lamp. LED, warm light", {"price": 24.5, "in_stock": True}),
}


@pytest.mark.parametrize(
    "name", ["items.csv", "items.tsv", "items.jsonl", "items.parquet", "items.csv.gz", "items.jsonl.gz",
             "items.parquet.gz"],
)  # fmt: skip
def test_each_format_loads_the_same_typed_items(
    db: Engine, database_url: str, tmp_path: Path, name: str
) -> None:
    path = write_items(tmp_path / name, ITEMS)
    result = run(database_url, "ingest", "items", str(path), "--list-columns", "tags", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["read"], summary["inserted"], summary["rejected"], summary["enqueued"]) == (3, 3, 0, 3)
    stored = items(db)
    assert {k: (r["title"], r["text"], r["attributes"]) for k, r in stored.items()} == EXPECTED
    assert all(r["active"] and r["content_hash"] == v.content_hash(r["text"]) for r in stored.values())
    # booleans stay JSON booleans in Postgres
    with db.connect() as conn:
        kinds = conn.execute(text("SELECT jsonb_typeof(attributes->'in_stock') FROM items")).scalars().all()
    assert set(kinds) == {"boolean"}
    assert sorted(outbox(db)) == sorted(("item", r["id"], "upsert") for r in stored.values())


def test_reingest_identical_file_changes_nothing(db: Engine, database_url: str, tmp_path: Path) -> None:
    path = write_items(tmp_path / "items.csv", ITEMS)
    assert run(database_url, "ingest", "items", str(path), "--list-columns", "tags").exit_code == 0
    before = items(db)
    clear_outbox(db)
    result = run(database_url, "ingest", "items", str(path), "--list-columns", "tags", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["inserted"], summary["updated"], summary["unchanged"], summary["enqueued"]) == (
        0,
        0,
        3,
        0,
    )
    assert outbox(db) == []
    assert items(db) == before  # not even updated_at moved


def test_changed_item_is_updated_with_exactly_one_outbox_row(
    db: Engine, database_url: str, tmp_path: Path
) -> None:
    path = write_items(tmp_path / "items.csv", ITEMS)
    assert run(database_url, "ingest", "items", str(path), "--list-columns", "tags").exit_code == 0
    clear_outbox(db)
    before = items(db)
    changed = [dict(r) for r in ITEMS]
    changed[1]["price"] = 9  # attribute change only
    changed[2]["description"] = "LED, cold light"  # text change
    path = write_items(tmp_path / "items2.csv", changed)
    result = run(database_url, "ingest", "items", str(path), "--list-columns", "tags", "--json")
    summary = json.loads(result.stdout)
    assert (summary["inserted"], summary["updated"], summary["unchanged"]) == (0, 2, 1)
    after = items(db)
    assert sorted(outbox(db)) == sorted(
        [("item", before["sku-2"]["id"], "upsert"), ("item", before["sku-3"]["id"], "upsert")]
    )
    assert after["sku-2"]["content_hash"] == before["sku-2"]["content_hash"]  # same text: no re-embedding
    assert after["sku-3"]["content_hash"] == v.content_hash("Desk lamp. LED, cold light")
    assert after["sku-1"] == before["sku-1"]


def test_prune_deactivates_absent_items_and_reactivation_enqueues(
    db: Engine, database_url: str, tmp_path: Path
) -> None:
    full = write_items(tmp_path / "full.csv", ITEMS)
    assert run(database_url, "ingest", "items", str(full), "--list-columns", "tags").exit_code == 0
    ids = {k: r["id"] for k, r in items(db).items()}
    clear_outbox(db)
    # sku-3 is absent; sku-2 is present but rejected (bad text): a rejected row must not be pruned
    partial = [ITEMS[0], {**ITEMS[1], "title": "", "description": ""}]
    path = write_items(tmp_path / "partial.csv", partial)
    result = run(database_url, "ingest", "items", str(path), "--list-columns", "tags", "--prune", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["pruned"], summary["rejected"], summary["unchanged"]) == (1, 1, 1)
    state = {k: r["active"] for k, r in items(db).items()}
    assert state == {"sku-1": True, "sku-2": True, "sku-3": False}
    assert outbox(db) == [("item", ids["sku-3"], "upsert")]
    # pruning again finds nothing more; re-loading the full file reactivates sku-3 (one outbox row)
    clear_outbox(db)
    result = run(database_url, "ingest", "items", str(full), "--list-columns", "tags", "--prune", "--json")
    summary = json.loads(result.stdout)
    assert (summary["pruned"], summary["updated"], summary["unchanged"]) == (0, 1, 2)
    assert outbox(db) == [("item", ids["sku-3"], "upsert")]
    assert all(r["active"] for r in items(db).values())


def test_prune_across_several_files_and_small_batches(db: Engine, database_url: str, tmp_path: Path) -> None:
    first = write_items(tmp_path / "a.jsonl", ITEMS)
    assert run(database_url, "ingest", "items", str(first)).exit_code == 0
    one = write_items(tmp_path / "one.jsonl", ITEMS[:1])
    two = write_items(tmp_path / "two.parquet", ITEMS[1:2])
    result = run(
        database_url, "ingest", "items", str(one), str(two), "--prune", "--batch-size", "1", "--json"
    )
    assert json.loads(result.stdout)["pruned"] == 1
    assert {k for k, r in items(db).items() if not r["active"]} == {"sku-3"}


def test_service_single_record_and_duplicate_ids_last_wins(
    db: Engine, sessions: sessionmaker[Session]
) -> None:
    records = [
        {"id": "x", "title": "First", "color": "red"},
        {"id": "x", "title": "Second", "color": "blue"},
    ]
    with transaction(sessions) as session:
        summary = ingest_items(session, numbered(records), ItemOptions(), source="request", on_error="abort")
    assert (summary.read, summary.inserted, summary.unchanged) == (2, 1, 1)
    stored = items(db)["x"]
    assert (stored["title"], stored["attributes"]) == ("Second", {"color": "blue"})
    assert len(outbox(db)) == 1


def test_movielens_items_csv(db: Engine, database_url: str, shared_dir: Path) -> None:
    path = shared_dir / "datasets" / "movielens-100k" / "items.csv"
    result = run(database_url, "ingest", "items", str(path), "--list-columns", "genres", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # two years are not numbers ("unkonwn", "V"): rejected with their line, the column stays an integer
    assert (summary["inserted"], summary["rejected"]) == (1680, 2)
    assert "items.csv:268: year: expected an integer (int), got 'unkonwn'" in result.stderr
    toy = items(db)["1"]
    assert toy["title"] == "Toy Story"
    assert toy["text"] == "Toy Story (1995). Genres: Animation, Children's, Comedy"  # title not repeated
    assert toy["attributes"] == {"year": 1995, "genres": ["Animation", "Children's", "Comedy"]}
