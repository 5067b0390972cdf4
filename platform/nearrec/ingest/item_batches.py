"""The fast path for item CSV/TSV files: pyarrow splits the file into columns (in C); the common rows are
parsed and typed by the schema a column at a time (:mod:`nearrec.ingest.item_columns`). The other rows are
parsed by one short loop over their cells, or by the row path's general parser
(:func:`nearrec.ingest.records.parse_item`) when that loop cannot, and typed by the row path's own
:func:`nearrec.ingest.service.typed`, so they are rejected, or stored, exactly as there; so is a whole batch
that brings an attribute the schema lacks (its type is inferred from the batch). Reading, record numbers and
lines: :mod:`nearrec.ingest.csv_batches`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from nearrec.errors import InputFileError
from nearrec.ingest import item_columns, service
from nearrec.ingest import values as v
from nearrec.ingest.csv_batches import CsvBatches
from nearrec.ingest.item_write import ItemRows
from nearrec.ingest.records import (
    ItemOptions,
    ItemRecord,
    RecordRejectedError,
    RowError,
    item_text_columns,
    parse_item,
)
from nearrec.ingest.schema import Schema
from nearrec.ingest.service import OnError, Prepared
from nearrec.ingest.text_source import ENCODING_GIVE_UP_ROWS

Cells = tuple[str | None, ...]


class ItemBatches(CsvBatches):
    """Validated batches of an item CSV file, ready for :func:`nearrec.ingest.service.write`."""

    kind = "items"
    recover_trailing = True

    def __init__(
        self,
        path: Path,
        delimiter: str,
        options: ItemOptions,
        schema: Schema,
        *,
        encoding: str,
        on_error: OnError,
        batch_rows: int,
    ) -> None:
        super().__init__(path, delimiter, on_error=on_error, batch_rows=batch_rows)
        self.schema = schema
        self.encoding = encoding  # as the user wrote it (the row path's messages name it so)
        self.options = dataclasses.replace(
            options,
            infer_types=True,
            text_columns=options.text_columns or item_text_columns(options, self.columns),
        )
        self._parse = _row_parser(self.columns, self.options)
        self._seen = 0  # rows looked at so far, and how many had an undecodable byte
        self._undecodable = 0

    def _prepare(self, batch: Prepared, chunk: pa.Table, records: npt.NDArray[np.int64]) -> None:
        columns, undecodable = self._decode(chunk)
        nul = np.zeros(chunk.num_rows, dtype=bool)
        for column in columns:
            nul |= pc.fill_null(pc.match_substring(column, "\x00"), True).to_numpy(zero_copy_only=False)
        fast = item_columns.typed_columns(
            dict(zip(self.columns, columns, strict=True)), nul, self.options, self.schema
        )
        rows = np.flatnonzero(fast.slow) if fast is not None else np.arange(chunk.num_rows)
        parsed = self._rows(batch, columns, rows, nul, undecodable, records)
        for number, fields in self._take_trailing(int(records[-1]) if len(records) else None):
            batch.read += 1
            self._seen += 1
            parsed += self._slow(batch, number, tuple(fields))
        parsed.sort(key=lambda pair: pair[0])
        table = None
        if fast is not None:
            table = fast.table.add_column(0, "line", pa.array(records[~fast.slow], pa.int64()))
        self._type(batch, parsed, table)

    def _rows(
        self,
        batch: Prepared,
        columns: list[pa.Array],
        rows: npt.NDArray[np.int64],
        nul: npt.NDArray[np.bool_],
        undecodable: dict[int, tuple[int, int]],
        records: npt.NDArray[np.int64],
    ) -> list[tuple[int, ItemRecord]]:
        """The given rows of the batch (indices, ascending) through the short parser or the row path's."""
        seen, self._seen = self._seen, self._seen + len(nul)
        if not len(rows):
            return []
        index = pa.array(rows)
        cells = [c.to_pylist() if len(rows) == len(nul) else c.take(index).to_pylist() for c in columns]
        parsed: list[tuple[int, ItemRecord]] = []
        for row, values in zip(rows.tolist(), zip(*cells, strict=True), strict=True):
            number = int(records[row])
            record = None if nul[row] else self._parse(values)
            if record is not None:
                parsed.append((number, record))
            elif row in undecodable:
                reason = self._undecodable_reason(batch.source, *undecodable[row], seen=seen + row + 1)
                batch.reject(self.locator.line(number), None, reason)
            else:
                parsed += self._slow(batch, number, values)
        return parsed

    def _type(self, batch: Prepared, parsed: list[tuple[int, ItemRecord]], typed: pa.Table | None) -> None:
        """The row path's typing by the schema of the ``parsed`` rows (their rejections name record
        numbers, made lines here), merged in line order with the rows ``typed`` by columns."""
        first = len(batch.rejections)
        batch.new_attributes.update(self.schema.take_pending())
        try:
            for number, record, document in service.typed(batch, self.schema, parsed, self.options):
                batch.rows.append(
                    (number, record.external_id, record.title, record.text, document, record.content_hash)
                )
        except RecordRejectedError as exc:  # abort mode
            rejection = dataclasses.replace(exc.rejection, line=self.locator.line(exc.rejection.line))
            raise RecordRejectedError(rejection) from None
        for k in range(first, len(batch.rejections)):
            rejection = batch.rejections[k]
            batch.rejections[k] = dataclasses.replace(rejection, line=self.locator.line(rejection.line))
        batch.items, batch.rows = ItemRows.of(batch.rows, typed), []

    def _slow(self, batch: Prepared, number: int, values: Cells) -> list[tuple[int, ItemRecord]]:
        """The row path's record parser for one row."""
        try:
            return [(number, parse_item(dict(zip(self.columns, values, strict=True)), self.options))]
        except RowError as exc:
            batch.reject(self.locator.line(number), exc.field, exc.reason, exc.record_id)
            return []

    def _decode(self, chunk: pa.Table) -> tuple[list[pa.Array], dict[int, tuple[int, int]]]:
        """The columns as UTF-8 strings, a cell that is not valid UTF-8 being NULL; and for each row with
        such a cell, the first one's column and undecodable byte."""
        columns: list[pa.Array] = []
        undecodable: dict[int, tuple[int, int]] = {}
        for k in range(chunk.num_columns):
            column = chunk.column(k).combine_chunks()
            try:
                columns.append(column.cast(pa.string()))
                continue
            except pa.ArrowInvalid:
                pass
            valid = []
            for row, raw in enumerate(column.to_pylist()):
                byte = _undecodable_byte(raw)
                valid.append(byte is None)
                if byte is not None and row not in undecodable:
                    undecodable[row] = (k, byte)
            columns.append(
                pc.if_else(pa.array(valid), column, pa.scalar(None, pa.binary())).cast(pa.string())
            )
        return columns, undecodable

    def _undecodable_reason(self, source: str, column: int, byte: int, *, seen: int) -> str:
        """The row readers' reason (:class:`nearrec.ingest.text_source.TextSource`), and their stop when so
        many rows fail that the file is plainly in another encoding."""
        self._undecodable += 1
        if self._undecodable > ENCODING_GIVE_UP_ROWS and self._undecodable * 10 > seen:
            raise InputFileError(
                source,
                f"{self._undecodable:,} of the first {seen:,} rows cannot be decoded; pass the file's "
                f"encoding, e.g. --encoding latin-1 (reading as {self.encoding})",
            )
        return (
            f"invalid {self.encoding} byte 0x{byte:02x} in field {self.columns[column]!r}; "
            "is the file in another encoding (--encoding)?"
        )


def _undecodable_byte(raw: bytes | None) -> int | None:
    """The first byte of ``raw`` that is not valid UTF-8 (None: it decodes)."""
    if raw is None:
        return None
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return raw[exc.start]
    return None


def _row_parser(columns: Sequence[str], options: ItemOptions) -> Callable[[Cells], ItemRecord | None]:
    """The parser of a common row: what :func:`~nearrec.ingest.records.parse_item` makes of it, or None for
    a row it must see (a missing or long id, no text, a text past the limit)."""
    where = {name: k for k, name in enumerate(columns)}
    ids = where[options.id_column]
    texts = [where.get(name) for name in options.text_columns or ()]
    title = where.get("title")
    attributes = [(name, k, name in options.list_columns) for k, name in enumerate(columns)
                  if name not in options.skip_columns]  # fmt: skip
    limit, sep, longest = options.max_text_chars, options.list_sep, v.MAX_ID_CHARS

    def parse(values: Cells) -> ItemRecord | None:
        if None in values:
            return None
        external_id = values[ids].strip()  # type: ignore[union-attr]
        if not external_id or len(external_id) > longest:
            return None
        text = v.compose_text([values[k].strip() if k is not None else "" for k in texts])  # type: ignore[union-attr]
        if not text or len(text) > limit:
            return None
        shown = (values[title].strip() or None) if title is not None else None  # type: ignore[union-attr]
        found: dict[str, Any] = {}
        for name, k, is_list in attributes:
            value: str = values[k]  # type: ignore[assignment]
            if is_list:
                parts = list(filter(None, map(str.strip, value.split(sep))))  # as values.split_list
                if parts:
                    found[name] = parts
            elif stripped := value.strip():
                found[name] = stripped
        return ItemRecord(external_id, shown, text, found, v.content_hash(text))

    return parse
