"""The fast path for interaction CSV/TSV files: parsed and validated column by column in C (pyarrow), then
made ready for a binary COPY straight into ``interactions`` (:mod:`nearrec.ingest.direct`), so Python never
touches a valid row (but to hash the content of a row without an event id).

It gives the same result as the row path (:func:`nearrec.ingest.service.prepare_interactions`): the same
rejections and reasons, the same values (so the same event keys). Reading, record numbers and lines:
:mod:`nearrec.ingest.csv_batches`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from nearrec.errors import InputFileError
from nearrec.ingest import direct
from nearrec.ingest import values as v
from nearrec.ingest.csv_batches import CsvBatches
from nearrec.ingest.events import EventCounter
from nearrec.ingest.records import (
    INTERACTION_COLUMNS,
    InteractionOptions,
    InteractionRecord,
    unknown_type_reason,
)
from nearrec.ingest.service import OnError, Prepared

_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_DIGITS = r"^[0-9]+$"
# Undecodable rows beyond which the file is taken to be in another encoding (the load stops).
ENCODING_GIVE_UP_ROWS = 100


class InteractionBatches(CsvBatches):
    """Validated batches of an interaction CSV file, ready for :mod:`nearrec.ingest.copy_write`."""

    kind = "interactions"

    def __init__(
        self,
        path: Path,
        delimiter: str,
        options: InteractionOptions,
        *,
        on_error: OnError,
        batch_rows: int,
    ) -> None:
        super().__init__(
            path, delimiter, on_error=on_error, batch_rows=batch_rows, columns=INTERACTION_COLUMNS
        )
        self.options = options
        self.events = EventCounter()
        self._undecodable = 0

    def _prepare(self, batch: Prepared, chunk: pa.Table, records: npt.NDArray[np.int64]) -> None:
        n = chunk.num_rows
        source = batch.source
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


def _reason(field: str, values: pa.Array | None, row: int) -> str:
    shown = values[row].as_py() if values is not None else None
    try:
        v.parse_float(shown)
    except ValueError as exc:
        return str(exc)
    return "is not a finite number"
