"""Value coercion: typed attributes, text composition, numbers and timestamps."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from nearrec.ingest import values as v


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("12", 12),
        ("-3", -3),
        ("+7", 7),
        ("0", 0),
        ("12.50", 12.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("TRUE", True),
        ("true", True),
        ("False", False),
        ("fAlSe", False),
        ("yes", "yes"),
        ("00123", "00123"),  # zip codes and SKUs keep their leading zeros
        ("nan", "nan"),
        ("inf", "inf"),
        ("1_000", "1_000"),
        ("12abc", "12abc"),
        ("  red  ", "red"),
        ("", None),
        ("   ", None),
        (str(2**63), str(2**63)),  # beyond int64 stays text
        (str(2**63 - 1), 2**63 - 1),
    ],
)
def test_infer_scalar(cell: str, expected: object) -> None:
    got = v.infer_scalar(cell)
    assert got == expected
    assert type(got) is type(expected)


def test_to_json_keeps_types_and_rejects_nan() -> None:
    assert v.to_json(True) is True
    assert v.to_json(3) == 3
    with pytest.raises(ValueError, match="NaN"):
        v.to_json(float("nan"))
    assert v.to_json(Decimal("2.50")) == 2.5
    assert v.to_json(Decimal("4")) == 4 and isinstance(v.to_json(Decimal("4")), int)
    assert v.to_json(date(2024, 1, 2)) == "2024-01-02"
    assert v.to_json([1, (2, "a")]) == [1, [2, "a"]]
    with pytest.raises(ValueError, match="infinity"):
        v.to_json(float("inf"))
    with pytest.raises(ValueError, match="UTF-8"):
        v.to_json(b"\xff")


def test_split_list() -> None:
    assert v.split_list("Action| Comedy ||Drama", "|") == ["Action", "Comedy", "Drama"]
    assert v.split_list(["a", 1], "|") == ["a", 1]
    assert v.split_list("solo", "|") == ["solo"]


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (["Red shoe", "Comfortable and light."], "Red shoe. Comfortable and light."),
        (["Why?", "Because."], "Why? Because."),
        (["", "Only the description"], "Only the description"),
        (["Only the title", ""], "Only the title"),
        (["Toy Story", "Toy Story (1995). Genres: Animation"], "Toy Story (1995). Genres: Animation"),
        (["a", "b", "c"], "a. b. c"),
        ([], ""),
    ],
)
def test_compose_text(parts: list[str], expected: str) -> None:
    assert v.compose_text(parts) == expected


def test_content_hash_is_sha256_of_utf8() -> None:
    assert v.content_hash("café") == hashlib.sha256("café".encode()).hexdigest()
    assert hashlib.sha256(b"").hexdigest() == v.EMPTY_TEXT_HASH


def test_external_id() -> None:
    assert v.external_id(" sku-1 ") == "sku-1"
    assert v.external_id(42) == "42"
    assert v.external_id(42.0) == "42"
    for bad, reason in [
        (True, "boolean"),
        ("", "empty"),
        ("x" * 257, "limit"),
        ("a\x00b", "NUL"),
        (1.5, "float"),
    ]:
        with pytest.raises(ValueError, match=reason):
            v.external_id(bad)


def test_parse_float() -> None:
    assert v.parse_float(" 4.5 ") == 4.5
    assert v.parse_float(3) == 3.0
    for bad in ("3,5", "abc", "nan", "inf", True):
        with pytest.raises(ValueError):
            v.parse_float(bad)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-01T12:00:00Z", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("2024-03-01T14:00:00+02:00", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("2024-03-01 12:00:00", datetime(2024, 3, 1, 12, tzinfo=UTC)),  # naive means UTC
        ("2024-03-01", datetime(2024, 3, 1, tzinfo=UTC)),
        ("1709294400", datetime(2024, 3, 1, 12, tzinfo=UTC)),  # unix seconds
        ("1709294400000", datetime(2024, 3, 1, 12, tzinfo=UTC)),  # unix milliseconds
        ("1709294400.5", datetime(2024, 3, 1, 12, 0, 0, 500000, tzinfo=UTC)),
        (1709294400, datetime(2024, 3, 1, 12, tzinfo=UTC)),
        (1709294400000, datetime(2024, 3, 1, 12, tzinfo=UTC)),
        (datetime(2024, 3, 1, 12), datetime(2024, 3, 1, 12, tzinfo=UTC)),
        (date(2024, 3, 1), datetime(2024, 3, 1, tzinfo=UTC)),
        ("881250949", datetime(1997, 12, 4, 15, 55, 49, tzinfo=UTC)),  # MovieLens
    ],
)
def test_parse_timestamp(value: object, expected: datetime) -> None:
    assert math.isclose(v.parse_timestamp(value), expected.timestamp(), abs_tol=1e-6)


@pytest.mark.parametrize(
    "value", ["yesterday", "2024-13-01", "01/02/2024", "1e400", "99999999999999999999", True]
)
def test_parse_timestamp_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        v.parse_timestamp(value)


def test_the_whitespace_the_item_columns_strip_is_what_str_strip_strips() -> None:
    from nearrec.ingest.item_columns import WHITESPACE

    assert set(WHITESPACE) == {chr(c) for c in range(0x110000) if chr(c).isspace()}
