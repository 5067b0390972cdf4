"""Coercion of raw cell values into what the database stores.

Every function raises :class:`ValueError` with a short, user-facing reason; the record parsers attach the
field name and line. Text cells (CSV) are inferred (number, boolean, string); values that come from typed
formats (JSON Lines, Parquet, HTTP bodies) keep their type.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]

MAX_ID_CHARS = 256
MAX_TYPE_CHARS = 64
_INT64 = 2**63
_NUMBER_START = frozenset("0123456789+-.")
_INT_RE = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?[0-9]+[eE][+-]?[0-9]+")
_NUMERIC_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Unix timestamps at or above this magnitude are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
MS_THRESHOLD = 1e11
MIN_EPOCH = 0.0  # 1970-01-01T00:00:00Z: no interaction is older
MAX_EPOCH = datetime(9999, 12, 30, tzinfo=UTC).timestamp()  # what Postgres and Python can both hold
EMPTY_TEXT_HASH = hashlib.sha256(b"").hexdigest()


def content_hash(text: str) -> str:
    """sha256 hex of the UTF-8 text: the worker re-embeds an item only when this changes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_blank(value: Any) -> bool:
    """None, an empty/whitespace string or a float NaN (how pandas writes a missing value)."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, float) and math.isnan(value)


def external_id(value: Any) -> str:
    """An id as text: strings are stripped, integers (and integral floats) printed without a fraction."""
    if isinstance(value, bool):
        raise ValueError("must be a string or an integer, not a boolean")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if not isinstance(value, str):
        raise ValueError(f"must be a string or an integer, not {type(value).__name__}")
    text = value.strip()
    if not text:
        raise ValueError("is empty")
    if "\x00" in text:
        raise ValueError("contains a NUL character")
    if len(text) > MAX_ID_CHARS:
        raise ValueError(f"is {len(text)} characters long; the limit is {MAX_ID_CHARS}")
    return text


def infer_scalar(text: str) -> JsonValue:
    """Type a text cell: ``true``/``false`` (any case) -> bool, integers -> int, decimals -> float.

    Integers with leading zeros (zip codes, SKUs) and integers beyond 64 bits stay strings; ``nan``/``inf``
    stay strings. An empty cell is None (the attribute is omitted).
    """
    s = text.strip()
    if not s:
        return None
    first = s[0]
    if first in _NUMBER_START:
        if _INT_RE.fullmatch(s):
            number = int(s)
            return number if -_INT64 <= number < _INT64 else s
        if _FLOAT_RE.fullmatch(s):
            value = float(s)
            return value if math.isfinite(value) else s
        return s
    if first in "tTfF" and len(s) in (4, 5):
        low = s.lower()
        if low == "true":
            return True
        if low == "false":
            return False
    return s


def to_json(value: Any) -> JsonValue:
    """Convert a typed value (JSON, Parquet) to a JSON value Postgres accepts; NaN means missing."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            raise ValueError("NaN is not a valid value")
        if math.isinf(value):
            raise ValueError("infinity is not a valid value")
        return value
    if isinstance(value, Decimal):
        return to_json(int(value) if value == value.to_integral_value() else float(value))
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("binary value is not UTF-8 text") from None
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    raise ValueError(f"unsupported value type {type(value).__name__}")


def split_list(value: Any, sep: str) -> list[JsonValue]:
    """A list attribute: a separated string is split (parts stripped, empty parts dropped)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(sep) if part.strip()]
    converted = to_json(value)
    if converted is None:
        return []
    return converted if isinstance(converted, list) else [converted]


def as_text(value: Any) -> str:
    """A value used as text (title, embedded text): lists are joined with ", "."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list | tuple):
        return ", ".join(as_text(v) for v in value if not is_blank(v))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def compose_text(parts: Iterable[str]) -> str:
    """Join the text columns into the document that is embedded: ``"Title. Description"``.

    Empty parts are skipped; no period is added after a part that already ends a sentence; a part that the
    next part already starts with (a description that repeats the title) is dropped.
    """
    kept = [p for p in parts if p]
    if len(kept) < 2:
        return kept[0] if kept else ""
    if len(kept) == 2:  # the common case (title and body), kept cheap
        first, second = kept
        if second.startswith(first):
            return second
        return f"{first} {second}" if first[-1] in ".!?:;" else f"{first}. {second}"
    out: list[str] = []
    for part, following in zip(kept, kept[1:], strict=False):
        if not following.startswith(part):
            out.append(part if part[-1] in ".!?:;" else part + ".")
    out.append(kept[-1])
    return " ".join(out)


def parse_float(value: Any) -> float:
    """A finite number from a number or a numeric string."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, int | float | Decimal):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"{_show(value)} is not a number") from None
    else:
        raise ValueError(f"must be a number, not {type(value).__name__}")
    if not math.isfinite(number):
        raise ValueError(f"{_show(value)} is not a finite number")
    return number


def parse_timestamp(value: Any, latest: float | None = None) -> float:
    """Unix seconds (float) from ISO 8601 text, unix seconds or milliseconds, or a datetime.

    Naive date-times are UTC. Numbers at or above 1e11 are milliseconds. The accepted range is from
    1970-01-01 to ``latest`` (now plus the allowed clock skew; default: the largest date Postgres and
    Python both hold); the error message states it.
    """
    if isinstance(value, bool):
        raise ValueError("must be a date-time, not a boolean")
    if isinstance(value, datetime):
        return _check_range(_aware(value).timestamp(), value, latest)
    if isinstance(value, date):
        moment = datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
        return _check_range(moment, value, latest)
    if isinstance(value, str):
        s = value.strip()
        if _NUMERIC_RE.fullmatch(s):
            return _from_number(float(s), value, latest)
        try:
            parsed = datetime.fromisoformat(s)
        except ValueError:
            if s[:4].isdigit() and int(s[:4]) >= 9999:
                return _check_range(math.inf, value, latest)
            raise ValueError(
                f"{_show(value)} is not an ISO 8601 date-time or a unix timestamp (seconds or milliseconds)"
            ) from None
        try:
            return _check_range(_aware(parsed).timestamp(), value, latest)
        except OverflowError:
            return _check_range(math.inf, value, latest)
    if isinstance(value, int | float | Decimal):
        return _from_number(float(value), value, latest)
    raise ValueError(f"must be a date-time or a number, not {type(value).__name__}")


def _from_number(number: float, original: Any, latest: float | None) -> float:
    if not math.isfinite(number):
        raise ValueError(f"{_show(original)} is not a valid timestamp")
    if abs(number) >= MS_THRESHOLD:
        number /= 1000.0
    return _check_range(number, original, latest)


def _check_range(seconds: float, original: Any, latest: float | None) -> float:
    upper = MAX_EPOCH if latest is None else min(latest, MAX_EPOCH)
    if not MIN_EPOCH <= seconds <= upper:
        raise ValueError(
            f"{_show(original)} is out of range: {accepted_range(upper, skew=latest is not None)}"
        )
    return seconds


def accepted_range(latest: float, *, skew: bool = True) -> str:
    """The accepted timestamp range, as stated in error messages."""
    end = datetime.fromtimestamp(latest, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    why = " (now + NEARREC_MAX_FUTURE_SKEW_SECONDS)" if skew else ""
    return f"accepted from 1970-01-01T00:00:00Z to {end}{why}"


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _show(value: Any, limit: int = 40) -> str:
    text = repr(value) if not isinstance(value, str) else repr(value.strip())
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def strip_nul(text: str) -> tuple[str, int]:
    """``text`` without NUL characters (Postgres text cannot hold one) and how many were removed."""
    if "\x00" not in text:
        return text, 0
    return text.replace("\x00", ""), text.count("\x00")


def strip_nul_json(value: Any) -> tuple[Any, int]:
    """A JSON value without NUL characters in its strings and keys, and how many were removed."""
    if isinstance(value, str):
        return strip_nul(value)
    if isinstance(value, list):
        out, total = [], 0
        for element in value:
            clean, n = strip_nul_json(element)
            out.append(clean)
            total += n
        return out, total
    if isinstance(value, dict):
        cleaned: dict[str, Any] = {}
        total = 0
        for key, element in value.items():
            clean, n = strip_nul_json(element)
            cleaned[key.replace("\x00", "")] = clean
            total += n + key.count("\x00")
        return cleaned, total
    return value, 0
