"""The filter language: parsing, validation errors that name their path, payload encoding, type inference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from nearrec.errors import ValidationError
from nearrec.filters import (
    And,
    Eq,
    FieldType,
    In,
    Not,
    Or,
    Range,
    infer_field_type,
    is_valid_field_name,
    match_value,
    matches,
    parse_filter,
    payload_value,
    read_filter,
)

SCHEMA = {
    "genre": FieldType.KEYWORD,
    "year": FieldType.INTEGER,
    "price": FieldType.FLOAT,
    "available": FieldType.BOOL,
}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"genre": "drama"}, Eq("genre", "drama")),
        ({"genre": {"eq": "drama"}}, Eq("genre", "drama")),
        ({"genre": {"ne": "drama"}}, Not(Eq("genre", "drama"))),
        ({"year": 1995}, Eq("year", 1995)),
        ({"year": 1995.0}, Eq("year", 1995)),
        ({"available": True}, Eq("available", True)),
        ({"price": 9}, Range("price", gte=9.0, lte=9.0)),
        (
            {"price": {"in": [1, 2.5]}},
            Or((Range("price", gte=1.0, lte=1.0), Range("price", gte=2.5, lte=2.5))),
        ),
        ({"genre": {"in": ["a", "b", "a"]}}, In("genre", ("a", "b"))),
        ({"genre": {"in": ["a"]}}, Eq("genre", "a")),
        ({"price": {"gte": 1, "lt": 10}}, Range("price", gte=1.0, lt=10.0)),
        ({"year": {"gt": 1990, "ne": 1995}}, And((Not(Eq("year", 1995)), Range("year", gt=1990.0)))),
        ({"not": {"genre": "drama"}}, Not(Eq("genre", "drama"))),
        ({"and": [{"genre": "a"}, {"year": 1}]}, And((Eq("genre", "a"), Eq("year", 1)))),
        ({"or": [{"genre": "a"}, {"available": False}]}, Or((Eq("genre", "a"), Eq("available", False)))),
        ({"genre": "a", "year": {"lte": 2000}}, And((Eq("genre", "a"), Range("year", lte=2000.0)))),
        ({}, And(())),
        ({"and": []}, And(())),
    ],
)
def test_parse_with_schema(raw: dict[str, Any], expected: object) -> None:
    assert parse_filter(raw, SCHEMA) == expected


def test_parse_without_schema_infers_from_values() -> None:
    assert parse_filter({"anything": 3}) == Eq("anything", 3)
    assert parse_filter({"anything": 3.5}) == Range("anything", gte=3.5, lte=3.5)
    assert parse_filter({"flag": False}) == Eq("flag", False)
    assert parse_filter({"tags": {"in": [1, 2]}}) == In("tags", (1, 2))


def test_read_filter_takes_a_json_string_or_a_mapping() -> None:
    assert read_filter('{"genre": {"in": ["a", "b"]}}', SCHEMA) == In("genre", ("a", "b"))
    assert read_filter({"genre": {"in": ["a", "b"]}}, SCHEMA) == In("genre", ("a", "b"))
    with pytest.raises(ValidationError) as err:
        read_filter('{"genre": ', SCHEMA)
    assert err.value.path == "filter"
    assert str(err.value).startswith("filter: invalid JSON")
    with pytest.raises(ValidationError, match=r"^filter\.year: "):
        read_filter('{"year": "x"}', SCHEMA)
    with pytest.raises(ValidationError, match="expected an object"):
        read_filter("[1, 2]", SCHEMA)


def test_read_filter_no_filter_and_a_lazy_schema() -> None:
    asked: list[int] = []

    def schema() -> dict[str, FieldType]:
        asked.append(1)
        return SCHEMA

    for empty in (None, "", {}, "{}"):
        assert read_filter(empty, schema) is None
    assert asked == []  # the schema is only fetched when there is a filter to check
    assert read_filter({"genre": "a"}, schema) == Eq("genre", "a")
    assert asked == [1]


@pytest.mark.parametrize(
    ("raw", "path", "message"),
    [
        (
            {"and": [{"genre": "a"}, {"price": "cheap"}]},
            "filter.and[1].price",
            'expected a number, got "cheap"',
        ),
        ({"price": {"gte": "1"}}, "filter.price.gte", 'expected a number, got "1"'),
        ({"price": {"lt": True}}, "filter.price.lt", "expected a number, got true"),
        ({"genre": 3}, "filter.genre", "expected a string, got 3"),
        ({"year": 1995.5}, "filter.year", "expected an integer, got 1995.5"),
        ({"available": 1}, "filter.available", "expected true or false, got 1"),
        ({"colour": "red"}, "filter.colour", "unknown attribute 'colour'"),
        ({"or": [{"not": {"nope": 1}}]}, "filter.or[0].not.nope", "unknown attribute 'nope'"),
        ({"genre": {"like": "dr%"}}, "filter.genre.like", "unknown operator 'like'"),
        ({"genre": {"in": []}}, "filter.genre.in", "expected a non-empty list"),
        ({"genre": {"in": "drama"}}, "filter.genre.in", "expected a non-empty list"),
        ({"genre": {"in": ["a", 3]}}, "filter.genre.in[1]", "expected a string, got 3"),
        ({"genre": {"gte": "a"}}, "filter.genre.gte", "range operators need a numeric attribute"),
        ({"available": {"lt": 1}}, "filter.available.lt", "range operators need a numeric attribute"),
        ({"genre": {}}, "filter.genre", "expected at least one operator"),
        ({"or": []}, "filter.or", "expected a non-empty list"),
        ({"and": {"genre": "a"}}, "filter.and", "expected a list of filters"),
        ({"not": ["genre"]}, "filter.not", "expected an object"),
        ({"genre": None}, "filter.genre", "expected a string, got null"),
        ({"genre": ["a", "b"]}, "filter.genre", "expected a string, got"),
        ({"price": float("nan")}, "filter.price", "expected a number"),
    ],
)
def test_errors_name_their_path(raw: Any, path: str, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_filter(raw, SCHEMA)
    assert err.value.path == path
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ("genre=drama", "filter"),
        ([{"genre": "a"}], "filter"),
        ({"a.b": 1}, "filter.a.b"),
        ({"x": {"in": ["a", 1]}}, "filter.x.in"),
        ({"x": {"in": ["a", 1.5]}}, "filter.x.in"),
        ({"x": [1]}, "filter.x"),
        ({"x": {"eq": {"y": 1}}}, "filter.x.eq"),
    ],
)
def test_errors_without_schema(raw: Any, path: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_filter(raw)
    assert err.value.path == path


def test_custom_root_path() -> None:
    with pytest.raises(ValidationError) as err:
        parse_filter({"year": "x"}, SCHEMA, path="body.filter")
    assert err.value.path == "body.filter.year"


def test_ast_is_hashable_and_immutable() -> None:
    expr = parse_filter({"or": [{"genre": {"in": ["a", "b"]}}, {"year": {"gte": 1}}]}, SCHEMA)
    assert hash(expr) == hash(
        parse_filter({"or": [{"genre": {"in": ["a", "b"]}}, {"year": {"gte": 1}}]}, SCHEMA)
    )
    assert isinstance(expr, Or)
    with pytest.raises(AttributeError):
        expr.exprs = ()  # type: ignore[misc]


def test_field_names() -> None:
    assert is_valid_field_name("release_year")
    assert is_valid_field_name("x-1")
    for bad in ("and", "not", "", "a.b", "1a", "a b", "a[0]"):
        assert not is_valid_field_name(bad)


def test_payload_value_stores_booleans_as_ints() -> None:
    assert payload_value(True) == 1 and type(payload_value(True)) is int
    assert payload_value([True, False]) == [1, 0]
    assert payload_value(("a", "b")) == ["a", "b"]
    assert payload_value(np.int64(3)) == 3 and type(payload_value(np.int64(3))) is int
    assert type(payload_value(np.float32(0.5))) is float
    assert payload_value(3, FieldType.FLOAT) == 3.0 and type(payload_value(3, FieldType.FLOAT)) is float
    assert payload_value("x") == "x" and payload_value(None) is None
    assert match_value(True) == 1 and match_value(False) == 0 and match_value("a") == "a"


@pytest.mark.parametrize(
    ("values", "current", "expected"),
    [
        ([True, False, None], None, FieldType.BOOL),
        ([1, 2, None], None, FieldType.INTEGER),
        ([1, 2.5], None, FieldType.FLOAT),
        ([2.5], FieldType.INTEGER, FieldType.FLOAT),
        ([1], FieldType.FLOAT, FieldType.FLOAT),
        (["a", ["b", "c"]], None, FieldType.KEYWORD),
        ([["a"], []], None, FieldType.KEYWORD),
        ([np.int32(4)], None, FieldType.INTEGER),
        ([None], None, None),
        ([], None, None),
        (["a", 1], None, None),
        ([True, 1], None, None),
        ([{"k": 1}], None, None),
        ([[["nested"]]], None, None),
        ([float("inf")], None, None),
        (["a"], FieldType.INTEGER, None),
    ],
)
def test_infer_field_type(values: list[Any], current: FieldType | None, expected: FieldType | None) -> None:
    assert infer_field_type(values, current) is expected


def test_matches_follows_qdrant_semantics() -> None:
    payload = {"genre": ["drama", "crime"], "year": 1994, "price": 9.5, "available": 1}
    assert matches(parse_filter({"genre": "crime"}), payload)
    assert matches(parse_filter({"genre": {"in": ["x", "drama"]}}), payload)
    assert not matches(parse_filter({"genre": {"ne": "crime"}}), payload)  # any element matches -> not fails
    assert matches(parse_filter({"available": True}), payload)
    assert matches(parse_filter({"price": 9.5}), payload)
    assert not matches(parse_filter({"year": "1994"}), payload)
    assert matches(parse_filter({"not": {"missing": 1}}), payload)
    assert not matches(parse_filter({"missing": {"gte": 0}}), payload)
    assert matches(parse_filter({"year": {"gt": 1990, "lte": 1994}}), payload)
    assert matches(parse_filter({}), payload)
