"""CSV/TSV files read by pyarrow in batches of columns: what the fast paths of interactions
(:mod:`nearrec.ingest.columnar`) and items (:mod:`nearrec.ingest.item_batches`) share.

Every column is read as bytes (each fast path decodes and checks them itself). pyarrow numbers records, not
lines: a batch carries record numbers (1 = the header) and a rejection's physical line is found by
:class:`LineLocator`, which scans the file with the csv module only as far as the last rejected record (a
file with no rejection is never scanned). Rows with the wrong number of fields are rejected with the row
path's reason. Batches start small (the writer waits for the first one) and double up to ``batch_rows``; a
batch also ends at :data:`MAX_BATCH_BYTES` of columns, whatever its rows.
"""

from __future__ import annotations

import bisect
import csv
import gzip
import io
import threading
from abc import ABC, abstractmethod
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pcsv

from nearrec.ingest.service import OnError, Prepared
from nearrec.ingest.summary import Kind

_BLOCK_BYTES = 1 << 20
FIRST_BATCH_ROWS = 25_000
# A batch also ends at this many bytes of the file, so long texts (an article body may be ~1 MB) keep memory
# flat: at most one batch is read ahead of the one being written.
MAX_BATCH_BYTES = 16 * _BLOCK_BYTES


def usable(path: Path, encoding: str, fmt: str, delimiter: str) -> bool:
    """True when a fast path can read this file (UTF-8 CSV/TSV, optionally gzip)."""
    return (
        fmt in ("csv", "tsv")
        and encoding.replace("_", "-").lower() in ("utf-8", "utf8")
        and len(delimiter) == 1
    )


def header(path: Path, delimiter: str) -> list[str]:
    """The header's column names, stripped (as the row readers see them)."""
    raw = gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")  # noqa: SIM115
    with io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="") as text:
        return [name.strip() for name in next(csv.reader(text, delimiter=delimiter), [])]


class LineLocator:
    """Record number (1 = header, blank lines not counted) -> physical line where the record starts.

    Kept as the points where ``line - record`` changes (a record over several lines, a blank line), so a
    file of one-line records costs no memory however many of its rows are rejected."""

    def __init__(self, path: Path, delimiter: str) -> None:
        self._path = path
        self._delimiter = delimiter
        self._records = array("q", [1])  # record 1 (the header) starts at line 1: offset 0 from there on
        self._offsets = array("q", [0])
        self._known = 1  # records located so far
        self._rows: Iterator[list[str]] | None = None
        self._reader: Any = None
        self._end = 0
        self._lock = threading.Lock()

    def line(self, record: int) -> int:
        with self._lock:
            if self._rows is None:
                self._open()
            while self._known < record and self._advance():
                pass
            if record > self._known:
                return record
            return record + self._offsets[bisect.bisect_right(self._records, record) - 1]

    def _open(self) -> None:
        raw = gzip.open(self._path, "rb") if self._path.suffix.lower() == ".gz" else open(self._path, "rb")  # noqa: SIM115
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
        self._reader = csv.reader(text, delimiter=self._delimiter)
        self._rows = iter(self._reader)
        next(self._rows, None)  # the header
        self._end = self._reader.line_num

    def _advance(self) -> bool:
        assert self._rows is not None
        for fields in self._rows:
            start, self._end = self._end + 1, self._reader.line_num
            if fields:
                self._known += 1
                if start - self._known != self._offsets[-1]:
                    self._records.append(self._known)
                    self._offsets.append(start - self._known)
                return True
        return False


class CsvBatches(ABC):
    """Batches of a CSV file's columns (as bytes), each turned into a :class:`Prepared` by the subclass.

    With ``recover_trailing``, a row with more fields than the header whose extra fields are all blank (a
    delimiter at the end of the line) is kept, as the row readers keep it: the subclass gets it apart
    (:meth:`_take_trailing`)."""

    kind: Kind
    recover_trailing = False

    def __init__(
        self,
        path: Path,
        delimiter: str,
        *,
        on_error: OnError,
        batch_rows: int,
        columns: Sequence[str] | None = None,
    ) -> None:
        """``columns``: those to read (None: all)."""
        self.path = path
        self.on_error = on_error
        self.batch_rows = max(batch_rows, 1)
        self.locator = LineLocator(path, delimiter)
        self._delimiter = delimiter
        self._invalid: list[tuple[int, str]] = []  # (record number, reason), in file order
        self._invalid_taken = 0
        self._trailing: list[tuple[int, list[str]]] = []  # (record number, fields), in file order
        self._trailing_taken = 0
        self._dropped: list[int] = []  # record numbers pyarrow left out (both of the above)
        self._valid = 0  # valid records yielded by pyarrow so far
        names = header(path, delimiter)
        self._stream = pa.input_stream(str(path), compression="detect")
        self._reader = pcsv.open_csv(
            self._stream,
            read_options=pcsv.ReadOptions(
                block_size=_BLOCK_BYTES, use_threads=False, column_names=names, skip_rows=1
            ),
            parse_options=pcsv.ParseOptions(
                delimiter=delimiter, newlines_in_values=True, invalid_row_handler=self._bad_row
            ),
            convert_options=pcsv.ConvertOptions(
                column_types={name: pa.binary() for name in names},
                include_columns=[n for n in names if columns is None or n in columns],
            ),
        )
        self.columns: list[str] = list(self._reader.schema.names)
        self._size = max(path.stat().st_size, 1)

    def _bad_row(self, row: Any) -> str:
        number, width = int(row.number), int(row.expected_columns)
        self._dropped.append(number)
        if self.recover_trailing and row.actual_columns > width:
            fields = next(csv.reader(io.StringIO(row.text), delimiter=self._delimiter), [])
            if len(fields) > width and not any(f.strip() for f in fields[width:]):
                self._trailing.append((number, fields[:width]))
                return "skip"
        self._invalid.append((number, f"expected {width} fields, found {row.actual_columns}"))
        return "skip"

    def fraction_done(self) -> float:
        try:
            return min(float(self._stream.tell()) / self._size, 1.0)
        except Exception:
            return 1.0

    def close(self) -> None:
        self._stream.close()

    def __iter__(self) -> Iterator[Prepared]:
        source = str(self.path)
        pending: list[pa.RecordBatch] = []
        rows = size = 0
        target = min(self.batch_rows, FIRST_BATCH_ROWS)
        for record_batch in self._reader:
            pending.append(record_batch)
            rows += record_batch.num_rows
            size += record_batch.nbytes
            if rows >= target or size >= MAX_BATCH_BYTES:
                yield self._batch(pa.Table.from_batches(pending).combine_chunks(), source)
                pending, rows, size, target = [], 0, 0, min(self.batch_rows, 2 * target)
        if pending:
            yield self._batch(pa.Table.from_batches(pending).combine_chunks(), source)
        leftover = self._take_invalid(None)
        trailing = self._trailing_taken < len(self._trailing)
        if leftover or trailing:
            batch = Prepared(self.kind, source, self.on_error)
            batch.line_of = self.locator.line
            self._reject_invalid(batch, leftover)
            if trailing:  # kept rows after the last record pyarrow gave
                self._prepare(batch, self._reader.schema.empty_table(), np.empty(0, dtype=np.int64))
            yield batch

    def _batch(self, chunk: pa.Table, source: str) -> Prepared:
        batch = Prepared(self.kind, source, self.on_error)
        records = self._record_numbers(chunk.num_rows)
        batch.read += chunk.num_rows
        batch.line_of = self.locator.line
        self._reject_invalid(batch, self._take_invalid(int(records[-1]) if len(records) else None))
        self._prepare(batch, chunk, records)
        return batch

    @abstractmethod
    def _prepare(self, batch: Prepared, chunk: pa.Table, records: npt.NDArray[np.int64]) -> None:
        """Validate the chunk's rows (``records``: their record numbers) into ``batch``."""

    def _record_numbers(self, n: int) -> npt.NDArray[np.int64]:
        """Record numbers of the next ``n`` valid records (skipping the invalid rows pyarrow dropped)."""
        first = self._valid + 2  # record 1 is the header
        self._valid += n
        positions = np.arange(first, first + n, dtype=np.int64)
        if not self._dropped:
            return positions
        bad = np.array(self._dropped, dtype=np.int64)
        adjusted = bad - np.arange(len(bad))
        return positions + np.searchsorted(adjusted, positions, side="right")

    def _take_invalid(self, upto: int | None) -> list[tuple[int, str]]:
        rows = self._invalid[self._invalid_taken :]
        if upto is not None:
            rows = rows[: bisect.bisect_right([r for r, _ in rows], upto)]
        self._invalid_taken += len(rows)
        return rows

    def _take_trailing(self, upto: int | None) -> list[tuple[int, list[str]]]:
        """The kept rows with trailing blank fields up to record ``upto`` (None: all that are left)."""
        rows = self._trailing[self._trailing_taken :]
        if upto is not None:
            rows = rows[: bisect.bisect_right([r for r, _ in rows], upto)]
        self._trailing_taken += len(rows)
        return rows

    def _reject_invalid(self, batch: Prepared, rows: Sequence[tuple[int, str]]) -> None:
        for record, reason in rows:
            batch.read += 1
            batch.reject(self.locator.line(record), None, reason)
