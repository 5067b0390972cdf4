"""Streaming readers on small local files: formats, line numbers, file-level errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nearrec.errors import InputFileError
from nearrec.ingest.readers import BadRow, ReadOptions, batched, detect_format, open_reader


def _rows(path: Path, **options: object) -> list[tuple[int, object]]:
    with open_reader(path, ReadOptions(**options)) as reader:  # type: ignore[arg-type]
        return list(reader)


def test_detect_format() -> None:
    assert detect_format(Path("a.csv")) == "csv"
    assert detect_format(Path("a.CSV.gz")) == "csv"
    assert detect_format(Path("a.tsv")) == "tsv"
    assert detect_format(Path("a.ndjson.gz")) == "jsonl"
    assert detect_format(Path("a.parquet")) == "parquet"
    assert detect_format(Path("a.data"), "jsonl") == "jsonl"
    with pytest.raises(InputFileError, match="--format"):
        detect_format(Path("a.json"))


def test_csv_multiline_quoted_fields_keep_start_line(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text('id,text\n1,"first\nsecond, third"\n\n2,plain\n3,"a ""quoted"" word"\n', encoding="utf-8")
    rows = _rows(path)
    assert rows == [
        (2, {"id": "1", "text": "first\nsecond, third"}),
        (5, {"id": "2", "text": "plain"}),
        (6, {"id": "3", "text": 'a "quoted" word'}),
    ]


def test_csv_wrong_field_count_is_a_bad_row_and_trailing_delimiters_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("id,title\n1,a,\n2\n3,c,d\n4,e\n", encoding="utf-8")
    rows = _rows(path)
    assert rows[0] == (2, {"id": "1", "title": "a"})
    assert rows[1] == (3, BadRow("expected 2 fields, found 1"))
    assert rows[2] == (4, BadRow("expected 2 fields, found 3"))
    assert rows[3] == (5, {"id": "4", "title": "e"})


def test_tsv_gzip_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "items.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8-sig") as f:
        f.write("id\ttitle\n1\tTab, separated\n")
    with open_reader(path) as reader:
        assert reader.columns == ["id", "title"]
        assert list(reader) == [(2, {"id": "1", "title": "Tab, separated"})]


def test_csv_custom_delimiter_and_latin1(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_bytes("id;title\n1;Caf\xe9 cr\xe8me\n".encode("latin-1"))
    assert _rows(path, delimiter=";", encoding="latin-1") == [(2, {"id": "1", "title": "Café crème"})]


def test_one_undecodable_row_is_a_bad_row_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    good = "".join(f"{i},title {i}\n" for i in range(5000))
    path.write_bytes(b"id,title\n" + good.encode() + b"9999,caf\xe9\n10000,fine\n")
    rows = _rows(path)
    assert len(rows) == 5002
    line, bad = rows[-2]
    assert line == 5002 and isinstance(bad, BadRow)
    assert "invalid utf-8 byte 0xe9 in field 'title'" in bad.reason and "--encoding" in bad.reason
    assert rows[-1] == (5003, {"id": "10000", "title": "fine"})


def test_a_file_in_another_encoding_stops_with_the_hint(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_bytes(b"id,title\n" + b"".join(b"%d,caf\xe9\n" % i for i in range(500)))
    with pytest.raises(InputFileError) as info:
        _rows(path)
    assert "cannot be decoded" in str(info.value) and "--encoding latin-1" in str(info.value)
    assert str(path) in str(info.value)


def test_file_level_errors(tmp_path: Path) -> None:
    cases = {
        "empty.csv": (b"", "empty"),
        "header.csv": (b"id,title\n", "no records"),
        "dup.csv": (b"id,id\n1,2\n", "appears twice"),
        "semi.csv": (b"id;title\n1;x\n", "delimiter ';'"),
        "blank.csv": (b"id,,title\n1,2,3\n", "empty column name"),
        "empty.jsonl": (b"\n\n", "empty"),
        "bad.csv.gz": (b"not gzip at all", "gzip"),
        "bad.parquet": (b"PAR1 nope", "Parquet"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(InputFileError, match=message):
            _rows(path)
    with pytest.raises(InputFileError, match="no such file"):
        _rows(tmp_path / "missing.csv")
    with pytest.raises(InputFileError, match="unknown encoding"):
        _rows(tmp_path / "dup.csv", encoding="klingon")


def test_jsonl_rows_bad_lines_and_gzip(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"id": 1, "tags": ["a"]}) + "\n\n")
        f.write("{not json}\n")
        f.write("[1, 2]\n")
        f.write(json.dumps({"id": "2", "in_stock": True}) + "\n")
    with open_reader(path) as reader:
        assert reader.columns == ["id", "tags"] and not reader.text_values
        rows = list(reader)
    assert rows[0] == (1, {"id": 1, "tags": ["a"]})
    assert rows[1][0] == 3 and isinstance(rows[1][1], BadRow) and "invalid JSON" in rows[1][1].reason
    assert rows[2] == (4, BadRow("expected a JSON object, found list"))
    assert rows[3] == (5, {"id": "2", "in_stock": True})


@pytest.mark.parametrize("compressed", [False, True])
def test_parquet_in_batches_with_row_numbers(tmp_path: Path, compressed: bool) -> None:
    table = pa.table({"id": [f"i{k}" for k in range(10_000)], "price": [float(k) for k in range(10_000)]})
    path = tmp_path / "items.parquet"
    pq.write_table(table, path, row_group_size=3000)
    if compressed:
        gz = tmp_path / "items.parquet.gz"
        gz.write_bytes(gzip.compress(path.read_bytes()))
        path = gz
    with open_reader(path) as reader:
        assert reader.columns == ["id", "price"]
        rows = list(reader)
        assert reader.fraction_done() == 1.0
    assert len(rows) == 10_000
    assert rows[0] == (1, {"id": "i0", "price": 0.0})
    assert rows[-1] == (10_000, {"id": "i9999", "price": 9999.0})


def test_batched() -> None:
    rows = [(i, {"id": str(i)}) for i in range(7)]
    assert [len(b) for b in batched(rows, 3)] == [3, 3, 1]
