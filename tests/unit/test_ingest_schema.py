"""The attribute schema: inference by majority, coercion to a declared type, limits."""

from __future__ import annotations

import pytest

from nearrec.errors import ValidationError
from nearrec.filters import FieldType
from nearrec.ingest.schema import AttributeRejected, Schema, coerce, infer_type, parse_types


def test_infer_type_takes_what_most_values_are() -> None:
    assert infer_type(["12.5", "3", "abc", "7"], text=True) == "float"
    assert infer_type(["3", "4", "x"], text=True) == "int"
    assert infer_type(["true", "FALSE", "maybe"], text=True) == "bool"
    assert infer_type(["red", "blue", "3"], text=True) == "string"
    assert infer_type(["1", "x"], text=True) == "string"  # no majority
    assert infer_type(["01234", "12345", "23456"], text=True) == "string"  # a zip code column
    assert infer_type([["a"], ["b"]], text=False) == "list"
    assert infer_type([1, 2.5], text=False) == "float"
    assert infer_type(["12"], text=False) == "string"  # a JSON string stays a string
    assert infer_type([{"a": 1}], text=False) == "json"


@pytest.mark.parametrize(
    ("value", "kind", "text", "expected"),
    [
        ("12.50", "float", True, 12.5),
        ("7", "float", True, 7.0),
        (7, "float", False, 7.0),
        ("7", "int", True, 7),
        (7.0, "int", False, 7),
        ("TRUE", "bool", True, True),
        ("0", "bool", True, False),
        ("12", "string", True, "12"),
        (12, "string", False, "12"),
        ("a|b", "list", True, ["a", "b"]),
        ([1, "b"], "list", False, ["1", "b"]),
        ({"a": [1]}, "json", False, {"a": [1]}),
    ],
)
def test_coerce(value: object, kind: str, text: bool, expected: object) -> None:
    got = coerce(value, kind, text=text)  # type: ignore[arg-type]
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("value", "kind", "text", "message"),
    [
        ("abc", "float", True, "expected a number (float), got 'abc'"),
        ("cheap", "float", False, "expected a number (float), got 'cheap'"),
        ("maybe", "bool", True, "expected true or false (bool), got 'maybe'"),
        (12.5, "int", False, "expected an integer (int)"),
        (float("nan"), "float", False, "got nan"),
        ("nan", "float", True, "got 'nan'"),
        (float("inf"), "float", False, "got inf"),
        (float("nan"), "json", False, "got nan"),
        (True, "float", False, "got True"),
        ([["nested"]], "list", False, "a list of strings"),
    ],
)
def test_coerce_rejects(value: object, kind: str, text: bool, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        coerce(value, kind, text=text)  # type: ignore[arg-type]


def test_schema_extend_apply_and_limits() -> None:
    schema = Schema("item", {"price": "float"}, max_attributes=3)
    schema.take_pending()
    refused = schema.extend(
        [{"price": "1", "brand": "x"}, {"color": "red", "size": "M"}], text=True, max_new=None
    )
    assert schema.types == {"price": "float", "brand": "string", "color": "string"}
    assert list(refused) == ["size"] and "full (3 attributes, NEARREC_MAX_ATTRIBUTES)" in refused["size"]
    assert schema.take_pending() == {"brand": "string", "color": "string"}
    with pytest.raises(AttributeRejected) as info:
        schema.apply({"price": "abc"}, text=True, list_sep="|")
    assert (info.value.name, info.value.reason) == ("price", "expected a number (float), got 'abc'")
    many = Schema("item", max_attributes=100_000)
    refused = many.extend([{f"k{i}": i for i in range(20_000)}], text=False, max_new=8)
    assert len(refused) == 20_000 and many.types == {} and "at most 8 may be added" in refused["k0"]
    assert Schema("item", {"a": "list", "b": "json", "c int": "int"}).filterable() == {"a": FieldType.KEYWORD}


def test_declared_types() -> None:
    assert parse_types(["price=float,in_stock=bool", "tags=list"]) == {
        "price": "float",
        "in_stock": "bool",
        "tags": "list",
    }
    with pytest.raises(ValidationError, match="unknown type 'money'"):
        parse_types("price=money")
    schema = Schema("item", {"price": "float"})
    with pytest.raises(ValidationError, match="nearrec schema set items price=int"):
        schema.declare({"price": "int"})
    schema.declare({"price": "float", "stock": "int"})
    assert schema.take_pending() == {"stock": "int"}
