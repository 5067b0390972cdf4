"""The fast paths' record -> line map (:class:`nearrec.ingest.csv_batches.LineLocator`)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

from nearrec.ingest.csv_batches import LineLocator


def _expected(path: Path) -> list[int]:
    """The physical line where each record starts (index 0 = record 1, the header), by the csv module."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        starts, end = [], 0
        for fields in reader:
            start, end = end + 1, reader.line_num
            if fields:
                starts.append(start)
    return starts


def test_lines_of_records_over_several_lines_and_blank_lines_in_any_order(tmp_path: Path) -> None:
    rng = random.Random(3)
    path = tmp_path / "items.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("id,text\n")
        for k in range(2000):
            kind = rng.random()
            if kind < 0.1:
                f.write(f'r{k},"line one\nline two\n\nline four"\n')
            elif kind < 0.15:
                f.write("\n")
                f.write(f"r{k},after a blank line\n")
            else:
                f.write(f"r{k},plain\n")
    expected = _expected(path)
    locator = LineLocator(path, ",")
    records = list(range(1, len(expected) + 1))
    asked = sorted(rng.sample(records, 300)) + rng.sample(records, 300)  # forward, then anywhere
    assert [locator.line(r) for r in asked] == [expected[r - 1] for r in asked]
    assert locator.line(len(expected) + 5) == len(expected) + 5  # past the end: the record number itself


def test_a_file_of_one_line_records_keeps_no_map(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("user,item\n" + "".join(f"u{k},i{k}\n" for k in range(50_000)), encoding="utf-8")
    locator = LineLocator(path, ",")
    assert locator.line(50_001) == 50_001
    assert locator.line(2) == 2
    assert len(locator._records) == 1  # one offset for the whole file, whatever was asked
