"""A validated interaction batch made ready, column by column, for COPY straight into ``interactions``.

Done by the reading thread, while the writer's COPY of the previous batch runs: the content keys
(:func:`content_keys`), the repeats within the batch (of two rows of the same event,
the first in the file is kept), the write order (user, time, line: a user's rows enter the
``(user_id, occurred_at)`` index side by side), and the binary COPY tuples, with the user and item ids (and the
time of untimed rows) left as placeholders: the writer knows them only once it has looked the ids up in its
transaction (:mod:`nearrec.ingest.copy_write`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from hashlib import md5

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from nearrec.postgres import copy_binary

# The COPY column order: the int8 fields first (one fixed-size head), then the others.
COPY_COLUMNS = ("user_id", "item_id", "occurred_at", "value", "type", "event_id", "event_key")
USER_OFFSET = copy_binary.head_offset(0)
ITEM_OFFSET = copy_binary.head_offset(1)
TIME_OFFSET = copy_binary.head_offset(2)
# The staging table's columns (the fallback path, :mod:`nearrec.postgres.interactions`).
STAGE_COLUMNS = ("line", "user_id", "item_id", "type", "value", "ts", "event_id", "occurrence")


@dataclass(frozen=True)
class DirectBatch:
    """Rows in write order. ``lines`` are record numbers (the caller maps them to physical lines)."""

    table: pa.Table  # the staged columns and event_key, deduplicated, in write order
    tuples: pa.Array  # the binary COPY tuples, same order
    users: list[str]  # distinct user external ids
    user_of: npt.NDArray[np.int32]  # per row: index into ``users``
    items: list[str]
    item_of: npt.NDArray[np.int32]
    user_names: pa.Array  # ``users`` and ``items`` as string arrays
    item_names: pa.Array
    untimed: npt.NDArray[np.bool_]  # rows without a timestamp: they happened at the transaction's time
    lines: npt.NDArray[np.int64]
    repeats: int  # rows left out as repeats of an earlier row of the same event in the batch

    @property
    def size(self) -> int:
        return int(self.table.num_rows)

    def staging_csv(self) -> bytes:
        """The rows as the staging table's CSV (the ON CONFLICT fallback)."""
        buffer = io.BytesIO()
        columns = self.table.select(list(STAGE_COLUMNS))
        pcsv.write_csv(columns, buffer, pcsv.WriteOptions(include_header=False, quoting_style="needed"))
        return buffer.getvalue()


def build(table: pa.Table) -> DirectBatch:
    """From the validated staged columns (:data:`STAGE_COLUMNS`, in file order)."""
    table = table.append_column("event_key", content_keys(table))
    table, repeats = _first_of_each_event(table)
    order = pc.sort_indices(
        table, sort_keys=[("user_id", "ascending"), ("ts", "ascending"), ("line", "ascending")]
    )
    table = table.take(order)
    users = pc.dictionary_encode(table.column("user_id").combine_chunks())
    items = pc.dictionary_encode(table.column("item_id").combine_chunks())
    ts = table.column("ts").combine_chunks()
    untimed = pc.is_null(ts).to_numpy(zero_copy_only=False)
    seconds = np.nan_to_num(ts.to_numpy(zero_copy_only=False), nan=copy_binary.PG_EPOCH_UNIX_SECONDS)
    zeros = np.zeros(table.num_rows, dtype=np.int64)
    tuples = copy_binary.rows(
        copy_binary.head(len(COPY_COLUMNS), [zeros, zeros, copy_binary.timestamptz(seconds)]),
        copy_binary.float8(table.column("value").combine_chunks()),
        copy_binary.text(table.column("type").combine_chunks()),
        copy_binary.text(table.column("event_id").combine_chunks()),
        copy_binary.uuid(table.column("event_key").combine_chunks()),
    )
    return DirectBatch(
        table=table,
        tuples=tuples,
        users=users.dictionary.to_pylist(),
        user_of=users.indices.to_numpy().astype(np.int32),
        items=items.dictionary.to_pylist(),
        item_of=items.indices.to_numpy().astype(np.int32),
        user_names=users.dictionary,
        item_names=items.dictionary,
        untimed=untimed,
        lines=table.column("line").to_numpy().astype(np.int64),
        repeats=repeats,
    )


def _first_of_each_event(table: pa.Table) -> tuple[pa.Table, int]:
    """Keep the first row (in file order) of each event: same event id, or same content key."""
    n = table.num_rows
    by_id = pc.binary_join_element_wise(pa.scalar(b"e"), table.column("event_id").cast(pa.binary()), b"")
    by_key = pc.binary_join_element_wise(pa.scalar(b"c"), table.column("event_key").cast(pa.binary()), b"")
    identity = pc.coalesce(by_id, by_key).combine_chunks()
    codes = pc.dictionary_encode(identity).indices.to_numpy()
    _, first = np.unique(codes, return_index=True)
    if len(first) == n:
        return table, 0
    return table.take(pa.array(np.sort(first))), n - len(first)


_HEX = np.array([f"{b:02x}".encode() for b in range(256)], dtype="S2")


def content_keys(table: pa.Table) -> pa.Array:
    """The content key of each row without an event id (``fixed_size_binary(16)``, an md5), NULL for the
    rows with one. The same bytes as the SQL of :mod:`nearrec.postgres.interactions`: 'c', user, item, type,
    the value's 8 bytes in hex, the timestamp in whole microseconds and the occurrence, separated by
    chr(31), an absent value being empty.

    ``table`` has the staged columns: user_id, item_id, type (strings), value, ts (float64, unix seconds),
    event_id (string) and occurrence (int32)."""
    n = table.num_rows
    rows = np.flatnonzero(pc.is_null(table.column("event_id")).to_numpy(zero_copy_only=False))
    if not len(rows):
        return pa.nulls(n, pa.binary(16))
    part = table.take(pa.array(rows))
    value = part.column("value").combine_chunks()
    bits = np.ascontiguousarray(value.to_numpy(zero_copy_only=False).astype(">f8")).view(np.uint8)
    hex_value = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), len(rows), [None, pa.py_buffer(np.ascontiguousarray(_HEX[bits]))]
    ).cast(pa.string())
    hex_value = pc.if_else(pc.is_valid(value), hex_value, pa.scalar(None, pa.string()))
    ts = part.column("ts").combine_chunks()
    micros = np.rint(ts.to_numpy(zero_copy_only=False) * 1_000_000.0)
    micros_text = pc.if_else(
        pc.is_valid(ts),
        pa.array(np.nan_to_num(micros).astype(np.int64)).cast(pa.string()),
        pa.scalar(None, pa.string()),
    )
    joined = pc.binary_join_element_wise(
        pa.array(np.full(len(rows), "c")),
        part.column("user_id"),
        part.column("item_id"),
        part.column("type"),
        hex_value,
        micros_text,
        part.column("occurrence").cast(pa.string()),
        "\x1f",
        null_handling="replace",
        null_replacement="",
    ).cast(pa.binary())
    digests = bytearray(16 * n)
    for row, data in zip(rows.tolist(), joined.to_pylist(), strict=True):
        digests[16 * row : 16 * row + 16] = md5(data).digest()
    valid = np.zeros(n, dtype=bool)
    valid[rows] = True
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), n, [pa.array(valid).buffers()[1], pa.py_buffer(digests)]
    )
