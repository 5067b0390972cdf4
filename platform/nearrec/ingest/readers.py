"""Streaming readers for CSV/TSV, JSON Lines and Parquet files, each optionally gzip-compressed.

A reader yields ``(line, record)`` pairs one at a time, so memory stays flat whatever the file size; the
loader groups them into batches. ``line`` is the physical line where a CSV record starts (quoted fields may
span lines), the line of a JSON Lines record, or the 1-based row number in a Parquet file. A row that cannot
be turned into a record at all (wrong number of CSV fields, invalid JSON) is yielded as a :class:`BadRow`
so the caller can reject it and go on. Problems with the file as a whole (empty, undecodable bytes, not
gzip, not Parquet) raise :class:`~nearrec.errors.InputFileError` naming the file and, where known, the line.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
import shutil
import tempfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Protocol, Self

from nearrec.errors import InputFileError
from nearrec.ingest.text_source import (
    STREAM_ERRORS,
    SURROGATE,
    TextSource,
    is_gzip,
)
from nearrec.ingest.text_source import BadRow as BadRow

Format = Literal["csv", "tsv", "jsonl", "parquet"]
FORMATS: tuple[Format, ...] = ("csv", "tsv", "jsonl", "parquet")
_SUFFIXES: dict[str, Format] = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# Largest CSV field accepted; longer texts are rejected by the record parser long before this.
_CSV_FIELD_LIMIT = 64 * 1024 * 1024
_PARQUET_BATCH_ROWS = 4096


Record = Mapping[str, Any]
Row = tuple[int, Record | BadRow]


@dataclass(frozen=True)
class ReadOptions:
    format: Format | None = None  # None: from the file extension
    delimiter: str | None = None  # None: "," for csv, tab for tsv
    encoding: str = "utf-8"


class RecordReader(Protocol):
    """What every reader offers. Use as a context manager; iterate once."""

    path: Path
    columns: list[str]
    # True when values are untyped text (CSV): the record parsers infer numbers and booleans.
    text_values: bool
    # True when every record has exactly ``columns`` (CSV, Parquet); JSON Lines records may differ.
    fixed_columns: bool

    def __iter__(self) -> Iterator[Row]: ...

    def fraction_done(self) -> float: ...

    def close(self) -> None: ...

    def __enter__(self) -> RecordReader: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def detect_format(path: Path, explicit: Format | None = None) -> Format:
    """The format given, or the one the extension names (``.csv``, ``.tsv``, ``.jsonl``, ``.parquet``,
    each optionally followed by ``.gz``)."""
    if explicit is not None:
        return explicit
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    if suffixes and suffixes[-1] in _SUFFIXES:
        return _SUFFIXES[suffixes[-1]]
    raise InputFileError(
        str(path), "cannot tell the format from the extension; use --format csv|tsv|jsonl|parquet"
    )


def open_reader(path: Path | str, options: ReadOptions | None = None) -> RecordReader:
    """Open a file for streaming. Reads the header (CSV/Parquet) or first record (JSON Lines) at once, so
    an empty or unreadable file fails here, before anything is written."""
    options = options or ReadOptions()
    path = Path(path)
    if not path.is_file():
        raise InputFileError(str(path), "no such file")
    try:
        codecs.lookup(options.encoding)
    except LookupError:
        raise InputFileError(str(path), f"unknown encoding {options.encoding!r}") from None
    fmt = detect_format(path, options.format)
    if fmt == "parquet":
        return ParquetReader(path)
    if fmt == "jsonl":
        return JsonLinesReader(path, options.encoding)
    delimiter = options.delimiter or ("\t" if fmt == "tsv" else ",")
    return CsvReader(path, delimiter, options.encoding)


def batched(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    """Lists of at most ``size`` rows."""
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Base(ABC):
    """Context-manager plumbing shared by the readers."""

    path: Path

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None: ...


class CsvReader(_Base):
    """CSV/TSV with a header row. Quoted fields may contain delimiters and newlines."""

    text_values = True
    fixed_columns = True

    def __init__(self, path: Path, delimiter: str, encoding: str) -> None:
        if len(delimiter) != 1:
            raise InputFileError(str(path), f"the delimiter must be one character, got {delimiter!r}")
        self.path = path
        self._source = TextSource(path, encoding)
        try:
            csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
            self._csv = csv.reader(self._source.text, delimiter=delimiter)
            header = self._next()
            while header is not None and not header:
                header = self._next()
            if header is None:
                raise InputFileError(str(path), "the file is empty (no header row)")
            if any(SURROGATE.search(name) for name in header):
                raise InputFileError(
                    str(path),
                    f"cannot decode the header row; pass the file's encoding, e.g. --encoding latin-1 "
                    f"(reading as {encoding})",
                    1,
                )
            self.columns = _clean_header(str(path), header, delimiter)
            self._end = self._csv.line_num
            self._rows = self._parse()
            self._first = next(self._rows, None)
        except BaseException:
            self._source.close()
            raise
        if self._first is None:
            self._source.close()
            raise InputFileError(str(path), "the file has a header row but no records")

    def _next(self) -> list[str] | None:
        try:
            return next(self._csv)
        except StopIteration:
            return None
        except csv.Error as exc:
            raise InputFileError(str(self.path), f"malformed CSV: {exc}", self._csv.line_num + 1) from None
        except STREAM_ERRORS as exc:
            raise self._source.failure(exc, self._csv.line_num + 1) from None

    def __iter__(self) -> Iterator[Row]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        yield from self._rows

    def _parse(self) -> Iterator[Row]:
        width = len(self.columns)
        columns = self.columns
        while (fields := self._next()) is not None:
            start, self._end = self._end + 1, self._csv.line_num
            if not fields:
                continue  # blank line
            bad = self._source.check_row(fields, columns)
            if bad is not None:
                yield start, bad
                continue
            if len(fields) != width:
                # Trailing empty fields (a delimiter at the end of every line) are harmless.
                if len(fields) > width and not any(f.strip() for f in fields[width:]):
                    fields = fields[:width]
                else:
                    yield start, BadRow(f"expected {width} fields, found {len(fields)}")
                    continue
            yield start, dict(zip(columns, fields, strict=True))

    def fraction_done(self) -> float:
        return self._source.fraction_done()

    def close(self) -> None:
        self._source.close()


def _clean_header(file: str, header: list[str], delimiter: str) -> list[str]:
    columns = [name.strip() for name in header]
    if columns and columns[0].startswith("\ufeff"):
        columns[0] = columns[0][1:].strip()
    if any(not name for name in columns):
        raise InputFileError(file, "the header row has an empty column name", 1)
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            raise InputFileError(file, f"column {name!r} appears twice in the header", 1)
        seen.add(name)
    if len(columns) == 1:
        for candidate, label in ((",", "','"), (";", "';'"), ("\t", "'\\t' (tab)"), ("|", "'|'")):
            if candidate != delimiter and candidate in columns[0]:
                raise InputFileError(
                    file, f"the header has a single column {columns[0]!r}; is the delimiter {label}?", 1
                )
    return columns


class JsonLinesReader(_Base):
    """One JSON object per line; blank lines are skipped. Values keep their JSON types."""

    text_values = False
    fixed_columns = False

    def __init__(self, path: Path, encoding: str) -> None:
        self.path = path
        self._source = TextSource(path, encoding)
        self._line = 0
        self._first: Row | None = None
        try:
            for row in self._rows():
                self._first = row
                break
        except BaseException:
            self._source.close()
            raise
        if self._first is None:
            self._source.close()
            raise InputFileError(str(path), "the file is empty (no JSON records)")
        first = self._first[1]
        self.columns = list(first) if not isinstance(first, BadRow) else []

    def _lines(self) -> Iterator[str]:
        try:
            for text in self._source.text:
                self._line += 1
                yield text
        except STREAM_ERRORS as exc:
            raise self._source.failure(exc, self._line + 1) from None

    def _rows(self) -> Iterator[Row]:
        for text in self._lines():
            if not text.strip():
                continue
            line = self._line
            bad = self._source.check_row((text,))
            if bad is not None:
                yield line, bad
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                yield line, BadRow(f"invalid JSON: {exc.msg} (column {exc.colno})")
                continue
            if not isinstance(value, dict):
                yield line, BadRow(f"expected a JSON object, found {type(value).__name__}")
                continue
            yield line, value

    def __iter__(self) -> Iterator[Row]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        yield from self._rows()

    def fraction_done(self) -> float:
        return self._source.fraction_done()

    def close(self) -> None:
        self._source.close()


class ParquetReader(_Base):
    """Parquet read in record batches (``iter_batches``); ``line`` is the 1-based row number."""

    text_values = False
    fixed_columns = True

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.path = path
        self._tmp: IO[bytes] | None = None
        source: str | IO[bytes] = str(path)
        try:
            if is_gzip(path):
                # Parquet needs random access: decompress to a temporary file, never into memory.
                self._tmp = tempfile.TemporaryFile(prefix="nearrec-", suffix=".parquet")  # noqa: SIM115
                with gzip.open(path, "rb") as gz:
                    shutil.copyfileobj(gz, self._tmp, 1 << 20)
                self._tmp.seek(0)
                source = self._tmp
            self._file = pq.ParquetFile(source)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            self.close()
            raise InputFileError(str(path), f"not a valid gzip file ({exc})") from None
        except Exception as exc:  # pyarrow raises ArrowInvalid / OSError subclasses
            self.close()
            raise InputFileError(str(path), f"not a readable Parquet file ({exc})") from None
        self.columns = list(self._file.schema_arrow.names)
        self._total = max(int(self._file.metadata.num_rows), 1)
        self._done = 0
        if self._file.metadata.num_rows == 0:
            self.close()
            raise InputFileError(str(path), "the file has no rows")

    def __iter__(self) -> Iterator[Row]:
        row = 0
        for batch in self._file.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
            for record in batch.to_pylist():
                row += 1
                yield row, record
            self._done = row

    def fraction_done(self) -> float:
        return min(self._done / self._total, 1.0)

    def close(self) -> None:
        file = getattr(self, "_file", None)
        if file is not None:
            file.close()
        if self._tmp is not None:
            self._tmp.close()
            self._tmp = None
