"""The fast path for interaction CSV/TSV files: parsed and validated column by column in C (pyarrow), then
made ready for a binary COPY straight into ``interactions`` (:mod:`nearrec.ingest.direct`), so Python never
touches a valid row (but to hash the content of a row without an event id).

It gives the same result as the row path (:func:`nearrec.ingest.service.prepare_interactions`): the same
rejections and reasons, the same values (so the same event keys). Lines: pyarrow numbers records,
not lines, so the staging ``line`` column holds the record number (1 = header) and a rejection's physical
line is found by :class:`LineLocator`, which scans the file with the csv module only as far as the last
rejected record (a file with no rejection is never scanned).
"""

from __future__ import annotations

import bisect
import csv
import io
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from nearrec.errors import InputFileError
from nearrec.ingest import direct
from nearrec.ingest import values as v
from nearrec.ingest.events import EventCounter
from nearrec.ingest.records import (
    INTERACTION_COLUMNS,
    InteractionOptions,
    InteractionRecord,
    unknown_type_reason,
)
from nearrec.ingest.service import OnError, Prepared

_BLOCK_BYTES = 1 << 20
FIRST_BATCH_ROWS = 25_000
_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_DIGITS = r"^[0-9]+$"
# Undecodable rows beyond which the file is taken to be in another encoding (the load stops).
ENCODING_GIVE_UP_ROWS = 100


def usable(path: Path, encoding: str, fmt: str, delimiter: str) -> bool:
    """True when the fast path can read this file (UTF-8 CSV/TSV, optionally gzip)."""
    return (
        fmt in ("csv", "tsv")
        and encoding.replace("_", "-").lower() in ("utf-8", "utf8")
        and len(delimiter) == 1
    )


class LineLocator:
    """Record number (1 = header, blank lines not counted) -> physical line where the record starts."""

    def __init__(self, path: Path, delimiter: str) -> None:
        self._path = path
        self._delimiter = delimiter
        self._starts: list[int] = [1]  # record 1 (the header) starts at line 1
        self._rows: Iterator[list[str]] | None = None
        self._reader: Any = None
        self._end = 0
        self._lock = threading.Lock()

    def line(self, record: int) -> int:
        with self._lock:
            if self._rows is None:
                self._open()
            while len(self._starts) < record and self._advance():
                pass
            return self._starts[record - 1] if record <= len(self._starts) else record

    def _open(self) -> None:
        import gzip

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
                self._starts.append(start)
                return True
        return False


class InteractionBatches:
    """Validated batches of an interaction CSV file, ready for :func:`nearrec.ingest.service.write`."""

    def __init__(
        self,
        path: Path,
        delimiter: str,
        options: InteractionOptions,
        *,
        on_error: OnError,
        batch_rows: int,
    ) -> None:
        self.path = path
        self.options = options
        self.on_error = on_error
        self.batch_rows = max(batch_rows, 1)
        self.locator = LineLocator(path, delimiter)
        self.events = EventCounter()
        self._invalid: list[tuple[int, str]] = []  # (record number, reason), in file order
        self._invalid_taken = 0
        self._undecodable = 0
        self._valid = 0  # valid records yielded by pyarrow so far
        header = _header(path, delimiter)
        stream = pa.input_stream(str(path), compression="detect")
        self._stream = stream
        self._reader = pcsv.open_csv(
            stream,
            read_options=pcsv.ReadOptions(block_size=_BLOCK_BYTES, use_threads=False),
            parse_options=pcsv.ParseOptions(
                delimiter=delimiter, newlines_in_values=True, invalid_row_handler=self._bad_row
            ),
            convert_options=pcsv.ConvertOptions(
                column_types={name: pa.binary() for name in header},
                include_columns=[name for name in header if name in INTERACTION_COLUMNS],
            ),
        )
        self.columns = [c.strip() for c in self._reader.schema.names]
        self._size = max(path.stat().st_size, 1)

    def _bad_row(self, row: Any) -> str:
        self._invalid.append(
            (int(row.number), f"expected {row.expected_columns} fields, found {row.actual_columns}")
        )
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
        rows = 0
        # The writer waits for the first batch: it is small, so the writer starts early, and each next one
        # twice as big, up to batch_rows (whose per-batch costs are then paid rarely).
        target = min(self.batch_rows, FIRST_BATCH_ROWS)
        for record_batch in self._reader:
            pending.append(record_batch)
            rows += record_batch.num_rows
            if rows >= target:
                yield self._prepare(pa.Table.from_batches(pending).combine_chunks(), source)
                pending, rows, target = [], 0, min(self.batch_rows, 2 * target)
        if pending:
            yield self._prepare(pa.Table.from_batches(pending).combine_chunks(), source)
        leftover = self._take_invalid(None)
        if leftover:
            batch = Prepared("interactions", source, self.on_error)
            self._reject_invalid(batch, leftover)
            yield batch

    # --- one batch --------------------------------------------------------------------------------------

    def _record_numbers(self, n: int) -> np.ndarray:
        """Record numbers of the next ``n`` valid records (skipping the invalid rows pyarrow dropped)."""
        first = self._valid + 2  # record 1 is the header
        self._valid += n
        positions = np.arange(first, first + n, dtype=np.int64)
        if not self._invalid:
            return positions
        bad = np.array([r for r, _ in self._invalid], dtype=np.int64)
        adjusted = bad - np.arange(len(bad))
        return positions + np.searchsorted(adjusted, positions, side="right")

    def _take_invalid(self, upto: int | None) -> list[tuple[int, str]]:
        rows = self._invalid[self._invalid_taken :]
        if upto is not None:
            rows = rows[: bisect.bisect_right([r for r, _ in rows], upto)]
        self._invalid_taken += len(rows)
        return rows

    def _reject_invalid(self, batch: Prepared, rows: Sequence[tuple[int, str]]) -> None:
        for record, reason in rows:
            batch.read += 1
            batch.reject(self.locator.line(record), None, reason)

    def _prepare(self, chunk: pa.Table, source: str) -> Prepared:
        batch = Prepared("interactions", source, self.on_error)
        n = chunk.num_rows
        records = self._record_numbers(n)
        batch.read += n
        batch.line_of = self.locator.line
        self._reject_invalid(batch, self._take_invalid(int(records[-1]) if n else None))
        cols = {name.strip(): chunk.column(i) for i, name in enumerate(chunk.schema.names)}
        reasons: list[tuple[int, str, str]] = []  # (row index, field, reason)
        text = {name: self._decode(name, cols.get(name), n, reasons) for name in
                ("user_id", "item_id", "type", "value", "timestamp", "event_id")}  # fmt: skip
        out = self._validate(text, n, reasons)
        bad = np.zeros(n, dtype=bool)
        first_reason: dict[int, tuple[str, str]] = {}
        for row, field, reason in reasons:
            if not bad[row]:
                bad[row] = True
                first_reason[row] = (field, reason)
        for row in sorted(first_reason):
            field, reason = first_reason[row]
            batch.reject(self.locator.line(int(records[row])), field, reason)
        if self._undecodable > ENCODING_GIVE_UP_ROWS and self._undecodable * 10 > self._valid:
            raise InputFileError(
                source,
                f"{self._undecodable:,} rows are not valid UTF-8; pass the file's encoding, e.g. "
                "--encoding latin-1 (reading as utf-8)",
            )
        keep = pa.array(~bad)
        table = pa.table({"line": pa.array(records), **out}).filter(keep)
        batch.direct = direct.build(self._with_occurrence(table))
        return batch

    def _decode(self, name: str, column: Any, n: int, reasons: list[tuple[int, str, str]]) -> pa.Array:
        """The column as trimmed UTF-8 strings (empty -> null); rows with undecodable bytes are rejected."""
        if column is None:
            return pa.nulls(n, pa.string())
        column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        try:
            strings = column.cast(pa.string())
        except pa.ArrowInvalid:
            values = column.to_pylist()
            fixed: list[str | None] = []
            for row, raw in enumerate(values):
                try:
                    fixed.append(None if raw is None else raw.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    self._undecodable += 1
                    byte = raw[exc.start : exc.start + 1].hex()
                    reasons.append((row, name, f"invalid UTF-8 byte 0x{byte}; is the file in another encoding "
                                               "(--encoding)?"))  # fmt: skip
                    fixed.append(None)
            strings = pa.array(fixed, pa.string())
        trimmed = pc.utf8_trim_whitespace(strings)
        return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)

    def _validate(
        self, text: dict[str, pa.Array], n: int, reasons: list[tuple[int, str, str]]
    ) -> dict[str, pa.Array]:
        def flag(
            mask: pa.Array, field: str, reason: str | None = None, values: pa.Array | None = None
        ) -> None:
            for row in np.flatnonzero(mask.fill_null(False).to_numpy(zero_copy_only=False)):
                shown = reason if reason is not None else _reason(field, values, int(row))
                reasons.append((int(row), field, shown))

        for name in ("user_id", "item_id"):
            col = text[name]
            flag(pc.is_null(col), name, "missing")
            flag(
                pc.greater(pc.utf8_length(col), v.MAX_ID_CHARS),
                name,
                f"is longer than {v.MAX_ID_CHARS} characters",
            )
            flag(pc.match_substring(col, "\x00"), name, "contains a NUL character")
        event = text["event_id"]
        flag(
            pc.greater(pc.utf8_length(event), v.MAX_ID_CHARS),
            "event_id",
            f"is longer than {v.MAX_ID_CHARS} characters",
        )
        flag(pc.match_substring(event, "\x00"), "event_id", "contains a NUL character")

        kind = pc.fill_null(pc.utf8_lower(text["type"]), self.options.default_type)
        if self.options.types is not None:
            known = pa.array(sorted(self.options.types), pa.string())
            unknown = pc.invert(pc.is_in(kind, value_set=known))
            for row in np.flatnonzero(unknown.to_numpy(zero_copy_only=False)):
                reasons.append(
                    (int(row), "type", unknown_type_reason(kind[int(row)].as_py(), self.options.types))
                )

        raw_value = text["value"]
        numeric = pc.match_substring_regex(raw_value, _NUMBER)
        value = pc.cast(pc.if_else(numeric, raw_value, pa.scalar(None, pa.string())), pa.float64())
        flag(pc.and_(pc.is_valid(raw_value), pc.invert(numeric.fill_null(False))), "value", None, raw_value)
        flag(pc.invert(pc.is_finite(value)), "value", None, raw_value)

        ts = self._timestamps(text["timestamp"], reasons)
        return {"user_id": text["user_id"], "item_id": text["item_id"], "type": kind, "value": value,
                "ts": ts, "event_id": event}  # fmt: skip

    def _timestamps(self, raw: pa.Array, reasons: list[tuple[int, str, str]]) -> pa.Array:
        digits = pc.match_substring_regex(raw, _DIGITS).fill_null(False)
        as_int = pc.cast(pc.if_else(digits, raw, pa.scalar(None, pa.string())), pa.float64())
        seconds = pc.if_else(pc.greater_equal(as_int, v.MS_THRESHOLD), pc.divide(as_int, 1000.0), as_int)
        latest = self.options.max_timestamp
        out = seconds.to_numpy(zero_copy_only=False).astype(np.float64)
        others = np.flatnonzero(pc.and_(pc.is_valid(raw), pc.invert(digits)).to_numpy(zero_copy_only=False))
        for row in others:
            try:
                out[row] = v.parse_timestamp(raw[int(row)].as_py(), latest)
            except ValueError as exc:
                reasons.append((int(row), "timestamp", str(exc)))
                out[row] = np.nan
        if latest is not None:
            late = np.flatnonzero(np.nan_to_num(out, nan=0.0) > latest)
            for row in late:
                try:
                    v.parse_timestamp(raw[int(row)].as_py(), latest)
                except ValueError as exc:
                    reasons.append((int(row), "timestamp", str(exc)))
        return pa.array(out, pa.float64(), mask=np.isnan(out))

    def _with_occurrence(self, table: pa.Table) -> pa.Table:
        """Number the repeats of untimed rows without an event id (see :mod:`nearrec.ingest.events`)."""
        untimed = pc.and_(pc.is_null(table.column("ts")), pc.is_null(table.column("event_id")))
        rows = np.flatnonzero(untimed.to_numpy(zero_copy_only=False))
        occurrence: list[int | None] = [None] * table.num_rows
        if len(rows):
            users, items = table.column("user_id"), table.column("item_id")
            kinds, values = table.column("type"), table.column("value")
            for row in rows:
                i = int(row)
                record = InteractionRecord(
                    users[i].as_py(), items[i].as_py(), kinds[i].as_py(), values[i].as_py(), None, None
                )
                occurrence[i] = self.events.occurrence(record)
        return table.append_column("occurrence", pa.array(occurrence, pa.int32()))


def _header(path: Path, delimiter: str) -> list[str]:
    """The header's column names as pyarrow will see them."""
    import gzip

    raw = gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")  # noqa: SIM115
    with io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="") as text:
        return next(csv.reader(text, delimiter=delimiter), [])


def _reason(field: str, values: pa.Array | None, row: int) -> str:
    shown = values[row].as_py() if values is not None else None
    try:
        v.parse_float(shown)
    except ValueError as exc:
        return str(exc)
    return "is not a finite number"
