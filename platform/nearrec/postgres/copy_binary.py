"""Rows in Postgres' binary COPY format, built column by column (numpy and pyarrow, no Python per row).

Binary COPY spares the server the parsing of text (timestamps, uuids, numbers): COPY of interactions in binary
costs about what a COPY of the raw CSV into a bare table costs (bench/ingest.py). A tuple is a 16-bit field
count, then per field a 32-bit length (-1 for NULL) and the value in network byte order.

Rows are built as a pyarrow ``large_binary`` array, one element per tuple, so a batch can be filtered (a
row rejected or found stored) without rebuilding it; leading ``int8`` fields may be left as placeholders and
filled in later (:func:`patch_int8`), once the ids they hold are known.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
TRAILER = b"\xff\xff"
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
PG_EPOCH_UNIX_SECONDS = 946_684_800.0
_NULL = pa.scalar(b"\xff\xff\xff\xff", pa.large_binary())
_NO_SEPARATOR = pa.scalar(b"", pa.large_binary())


def _as_binary(buffer: npt.NDArray[np.generic], width: int, n: int) -> pa.Array:
    """``n`` elements of ``width`` bytes each, read from a contiguous numpy buffer."""
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, pa.py_buffer(buffer)])
    return fixed.cast(pa.large_binary())


def head(n_fields: int, columns: list[npt.NDArray[np.int64]]) -> pa.Array:
    """The start of each tuple: its field count, then non-NULL ``int8`` fields (int64 values)."""
    n = len(columns[0]) if columns else 0
    dtype = [("count", ">i2")]
    for k in range(len(columns)):
        dtype += [(f"len{k}", ">i4"), (f"v{k}", ">i8")]
    record = np.empty(n, dtype=dtype)
    record["count"] = n_fields
    for k, values in enumerate(columns):
        record[f"len{k}"] = 8
        record[f"v{k}"] = values
    return _as_binary(record, record.dtype.itemsize, n)


def head_offset(field: int) -> int:
    """Byte offset, in a tuple, of the value of the ``field``-th (0-based) ``int8`` field of :func:`head`."""
    return 2 + 12 * field + 4


def float8(values: pa.Array) -> pa.Array:
    """A nullable ``float8`` field."""
    n = len(values)
    record = np.empty(n, dtype=[("len", ">i4"), ("v", ">f8")])
    record["len"] = 8
    record["v"] = values.to_numpy(zero_copy_only=False)  # NULLs come out as NaN: replaced below
    out = _as_binary(record, 12, n)
    return pc.if_else(pc.is_valid(values), out, _NULL) if values.null_count else out


def text(values: pa.Array) -> pa.Array:
    """A nullable ``text`` field (UTF-8 strings)."""
    data = values.cast(pa.large_binary())
    lengths = pc.binary_length(data).fill_null(0).to_numpy().astype(">i4")
    out = pc.binary_join_element_wise(_as_binary(lengths, 4, len(values)), data, _NO_SEPARATOR)
    return pc.if_else(pc.is_valid(values), out, _NULL) if values.null_count else out


def uuid(values: pa.Array) -> pa.Array:
    """A nullable ``uuid`` field from ``fixed_size_binary(16)`` values."""
    n = len(values)
    if values.null_count == n:
        return _as_binary(np.full(n, -1, dtype=">i4"), 4, n)
    prefix = _as_binary(np.full(n, 16, dtype=">i4"), 4, n)
    out = pc.binary_join_element_wise(prefix, values.cast(pa.large_binary()), _NO_SEPARATOR)
    return pc.if_else(pc.is_valid(values), out, _NULL) if values.null_count else out


def rows(*fields: pa.Array) -> pa.Array:
    """Whole tuples: the fields of each row, concatenated (a ``large_binary`` array)."""
    return pc.binary_join_element_wise(*fields, _NO_SEPARATOR)


def payload(tuples: pa.Array) -> tuple[bytearray, npt.NDArray[np.int64]]:
    """The COPY data of ``tuples`` (header, tuples, trailer) as a mutable buffer, and where each tuple
    starts in it."""
    offsets = np.frombuffer(tuples.buffers()[1], dtype=np.int64)[
        tuples.offset : tuples.offset + len(tuples) + 1
    ]
    body = tuples.buffers()[2]
    start, end = int(offsets[0]), int(offsets[-1]) if len(offsets) else 0
    out = bytearray(len(HEADER) + (end - start) + len(TRAILER))
    out[: len(HEADER)] = HEADER
    if end > start:
        out[len(HEADER) : len(HEADER) + end - start] = memoryview(body)[start:end]
    out[len(out) - len(TRAILER) :] = TRAILER
    return out, offsets[:-1] - start + len(HEADER)


def patch_int8(
    data: bytearray, starts: npt.NDArray[np.int64], offset: int, values: npt.NDArray[np.int64]
) -> None:
    """Write ``values`` (one per tuple) as the ``int8`` at ``offset`` bytes into each tuple."""
    if not len(values):
        return
    view = np.frombuffer(data, dtype=np.uint8)
    where = (starts + offset)[:, None] + np.arange(8)
    view[where] = np.ascontiguousarray(values.astype(">i8")).view(np.uint8).reshape(-1, 8)


def timestamptz(unix_seconds: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Microseconds since 2000-01-01 UTC, rounded as Postgres' ``to_timestamp(double precision)`` does."""
    return np.rint((unix_seconds - PG_EPOCH_UNIX_SECONDS) * 1_000_000.0).astype(np.int64)


def timestamptz_of(moment: datetime) -> int:
    """Microseconds since 2000-01-01 UTC of an aware datetime (exact)."""
    delta = moment - PG_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
