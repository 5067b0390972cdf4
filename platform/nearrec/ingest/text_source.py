"""A text file (optionally gzip) decoded for the readers. Undecodable bytes are kept as lone surrogates
(``surrogateescape``), so the row holding one is rejected with its line while the others load
(:meth:`TextSource.check_row`); a file where many rows fail is taken to be in another encoding."""

from __future__ import annotations

import codecs
import gzip
import io
import os
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from nearrec.errors import InputFileError


@dataclass(frozen=True)
class BadRow:
    """A row that could not be parsed into a record; ``reason`` says why."""

    reason: str


def is_gzip(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


STREAM_ERRORS = (UnicodeDecodeError, gzip.BadGzipFile, EOFError, zlib.error)
SURROGATE = re.compile("[\udc80-\udcff]")
# Undecodable rows beyond which (and beyond 10% of the rows) a file is taken to be in another encoding.
ENCODING_GIVE_UP_ROWS = 100


class TextSource:
    """A (possibly gzip) file decoded as text, in large chunks (fast). When a byte cannot be decoded, the
    file is scanned again line by line to name the line."""

    def __init__(self, path: Path, encoding: str) -> None:
        self.path = path
        self.encoding = encoding
        self._raw: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._size = max(os.fstat(self._raw.fileno()).st_size, 1)
        # Undecodable bytes become lone surrogates (surrogateescape): the row holding one is rejected with
        # its line (:meth:`check_row`) and the others load; many such rows stop the file (another encoding).
        self.text = io.TextIOWrapper(
            self._binary(self._raw), encoding=encoding, errors="surrogateescape", newline=""
        )
        self.rows = 0
        self.undecodable = 0

    def check_row(self, fields: Iterable[str], names: Sequence[str] | None = None) -> BadRow | None:
        """A BadRow naming the first undecodable byte of a row (None if the row decoded); raises
        InputFileError once so many rows failed that the file is plainly in another encoding."""
        self.rows += 1
        for index, value in enumerate(fields):
            if value.isascii() or SURROGATE.search(value) is None:
                continue
            self.undecodable += 1
            if self.undecodable > ENCODING_GIVE_UP_ROWS and self.undecodable * 10 > self.rows:
                raise InputFileError(
                    str(self.path),
                    f"{self.undecodable:,} of the first {self.rows:,} rows cannot be decoded; pass the file's "
                    f"encoding, e.g. --encoding latin-1 (reading as {self.encoding})",
                )
            bad = SURROGATE.search(value)
            byte = f"0x{ord(bad.group()) - 0xDC00:02x}" if bad else "?"
            where = f" in field {names[index]!r}" if names is not None and index < len(names) else ""
            return BadRow(
                f"invalid {self.encoding} byte {byte}{where}; is the file in another encoding (--encoding)?"
            )
        return None

    def _binary(self, raw: IO[bytes]) -> IO[bytes]:
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw)) if is_gzip(self.path) else raw

    def failure(self, exc: BaseException, line: int | None) -> InputFileError:
        """The InputFileError for an error raised while reading."""
        if isinstance(exc, UnicodeDecodeError):
            return self._locate_decode_error()
        return InputFileError(str(self.path), f"not a valid gzip file ({exc})", line)

    def _locate_decode_error(self) -> InputFileError:
        hint = f"pass the file's encoding, e.g. --encoding latin-1 (reading as {self.encoding})"
        if "\n".encode(self.encoding) != b"\n":  # UTF-16/32: lines cannot be split as bytes
            return InputFileError(str(self.path), f"cannot decode the file; {hint}")
        decoder = codecs.getincrementaldecoder(self.encoding)(errors="strict")
        line = 0
        with open(self.path, "rb") as raw, self._binary(raw) as stream:
            try:
                for line, data in enumerate(stream, 1):  # noqa: B007 - line is used after the loop
                    try:
                        decoder.decode(data)
                    except UnicodeDecodeError as exc:
                        bad = exc.object[exc.start : exc.start + 1].hex()
                        return InputFileError(
                            str(self.path),
                            f"cannot decode byte 0x{bad} (byte {exc.start + 1} of the line); {hint}",
                            line,
                        )
                decoder.decode(b"", final=True)
            except (UnicodeDecodeError, *STREAM_ERRORS[1:]):
                pass
        return InputFileError(
            str(self.path), f"the file ends in the middle of a character; {hint}", line or None
        )

    def fraction_done(self) -> float:
        try:
            return min(self._raw.tell() / self._size, 1.0)
        except (OSError, ValueError):
            return 1.0

    def close(self) -> None:
        self.text.close()
        self._raw.close()
