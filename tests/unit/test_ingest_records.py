"""Record validation: what an item, user or interaction becomes, and why a record is rejected."""

from __future__ import annotations

import pytest

from nearrec.errors import InputFileError
from nearrec.ingest import values as v
from nearrec.ingest.records import (
    InteractionOptions,
    ItemOptions,
    RowError,
    UserOptions,
    check_columns,
    parse_interaction,
    parse_item,
    parse_user,
)
from nearrec.ingest.schema import Schema
from nearrec.ingest.service import Prepared, numbered, prepare_interactions, prepare_items

CSV_ITEMS = ItemOptions(list_columns=frozenset({"tags"}), infer_types=True)


def test_item_from_csv_cells() -> None:
    raw = {
        "id": " sku-1 ",
        "title": "Red shoe",
        "description": "Comfortable.",
        "price": "12.50",
        "stock": "7",
        "in_stock": "TRUE",
        "color": "red",
        "tags": "a|b",
        "empty": "",
    }
    item = parse_item(raw, CSV_ITEMS)
    assert item.external_id == "sku-1"
    assert item.title == "Red shoe"
    assert item.text == "Red shoe. Comfortable."
    assert item.content_hash == v.content_hash("Red shoe. Comfortable.")
    # cells stay text until the schema types them
    assert item.attributes == {
        "price": "12.50",
        "stock": "7",
        "in_stock": "TRUE",
        "color": "red",
        "tags": ["a", "b"],
    }
    schema = Schema("item")
    assert schema.extend([item.attributes], text=True, max_new=None) == {}
    assert schema.types == {
        "price": "float",
        "stock": "int",
        "in_stock": "bool",
        "color": "string",
        "tags": "list",
    }
    typed = schema.apply(item.attributes, text=True, list_sep="|")
    assert typed == {"price": 12.5, "stock": 7, "in_stock": True, "color": "red", "tags": ["a", "b"]}
    assert typed["in_stock"] is True


def test_item_from_typed_record_keeps_types() -> None:
    raw = {
        "id": 7,
        "title": "T",
        "text": "body",
        "price": 3,
        "flag": "true",
        "nested": {"a": [1]},
        "none": None,
    }
    item = parse_item(raw, ItemOptions())
    assert item.external_id == "7"
    assert item.attributes == {
        "price": 3,
        "flag": "true",
        "nested": {"a": [1]},
    }  # a JSON string stays a string


def test_item_text_columns_and_ignored_columns() -> None:
    options = ItemOptions(text_columns=("title", "category"), ignore_columns=frozenset({"internal"}))
    raw = {"id": "1", "title": "Lamp", "description": "long text", "category": "lighting", "internal": "x"}
    item = parse_item(raw, options)
    assert item.text == "Lamp. lighting"
    # the document columns never become attributes; other embedded columns stay filterable
    assert item.attributes == {"category": "lighting"}


@pytest.mark.parametrize(
    ("raw", "field", "reason"),
    [
        ({"title": "x"}, "id", "missing"),
        ({"id": "  ", "title": "x"}, "id", "missing"),
        ({"id": True, "title": "x"}, "id", "boolean"),
        ({"id": "1", "title": "", "description": ""}, "title/description", "no text"),
        ({"id": "1", "title": "x", "description": "y" * 200}, "description", "limit is 100"),
        ({"id": "1", "title": "x", "weight": float("inf")}, "weight", "infinity"),
    ],
)
def test_item_rejections(raw: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(RowError) as info:
        parse_item(raw, ItemOptions(max_text_chars=100))
    assert info.value.field == field
    assert reason in info.value.reason


def test_nul_characters_are_stripped_and_counted() -> None:
    item = parse_item({"id": "1", "title": "a\x00b", "text": "body\x00 text", "tag": "x\x00"}, ItemOptions())
    assert (item.title, item.text, item.attributes, item.nuls) == ("ab", "ab. body text", {"tag": "x"}, 3)


def test_user_profile_and_attributes() -> None:
    user = parse_user(
        {"user_id": "9", "age": "24", "occupation": "writer"},
        UserOptions(id_column="user_id", infer_types=True),
    )
    assert user == ("9", None, {"age": "24", "occupation": "writer"}, 0)
    user = parse_user({"id": "9", "profile": " likes jazz ", "country": "FR"}, UserOptions(infer_types=True))
    assert user.profile == "likes jazz" and user.attributes == {"country": "FR"}
    options = UserOptions(text_columns=("bio", "city"), infer_types=True)
    user = parse_user({"id": "9", "bio": "Chef", "city": "Lyon", "age": "40"}, options)
    assert user.profile == "Chef. Lyon" and user.attributes == {"age": "40"}


def test_interaction_defaults_and_values() -> None:
    options = InteractionOptions(default_type="rating")
    record = parse_interaction(
        {"user_id": "u1", "item_id": "i1", "value": "4", "timestamp": "881250949"}, options
    )
    assert record == ("u1", "i1", "rating", 4.0, 881250949.0, None)
    record = parse_interaction(
        {
            "user_id": 1,
            "item_id": 2,
            "type": " Purchase ",
            "timestamp": "2024-01-01T00:00:00Z",
            "event_id": 5,
        },
        options,
    )
    assert record == ("1", "2", "purchase", None, 1704067200.0, "5")
    assert parse_interaction({"user_id": "u", "item_id": "i", "timestamp": ""}, options).timestamp is None


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"item_id": "i"}, "user_id"),
        ({"user_id": "u", "item_id": ""}, "item_id"),
        ({"user_id": "u", "item_id": "i", "value": "four"}, "value"),
        ({"user_id": "u", "item_id": "i", "value": "inf"}, "value"),
        ({"user_id": "u", "item_id": "i", "timestamp": "last tuesday"}, "timestamp"),
        ({"user_id": "u", "item_id": "i", "type": "teleport"}, "type"),
        ({"user_id": "u", "item_id": "i", "type": 3}, "type"),
        ({"user_id": "u", "item_id": "i", "event_id": "e\x00"}, "event_id"),
        ({"user_id": "u", "item_id": "i", "value": float("nan")}, "value"),
        ({"user_id": "u", "item_id": "i", "value": "NaN"}, "value"),
        ({"user_id": "u", "item_id": "i", "timestamp": "99999999999999"}, "timestamp"),
        ({"user_id": "u", "item_id": "i", "timestamp": "9999-12-31T23:59:59Z"}, "timestamp"),
        ({"user_id": "u", "item_id": "i", "timestamp": float("nan")}, "timestamp"),
    ],
)
def test_interaction_rejections(raw: dict[str, object], field: str) -> None:
    options = InteractionOptions(types=frozenset({"view", "rating"}), max_timestamp=1_800_000_000.0)
    with pytest.raises(RowError) as info:
        parse_interaction(raw, options)
    assert info.value.field == field


def test_rejections_state_the_known_types_and_the_accepted_range() -> None:
    options = InteractionOptions(types=frozenset({"view", "rating"}), max_timestamp=1_800_000_000.0)
    with pytest.raises(RowError, match=r"unknown interaction type 'teleport' \(known: rating, view"):
        parse_interaction({"user_id": "u", "item_id": "i", "type": "teleport"}, options)
    with pytest.raises(RowError, match="accepted from 1970-01-01T00:00:00Z to 2027-01-15T08:00:00Z"):
        parse_interaction({"user_id": "u", "item_id": "i", "timestamp": "99999999999999"}, options)
    ok = parse_interaction({"user_id": "u", "item_id": "i", "timestamp": "1799999999"}, options)
    assert ok.timestamp == 1799999999.0


def test_check_columns() -> None:
    with pytest.raises(InputFileError, match="missing required column 'id'.*found 'sku', 'title'"):
        check_columns("items", ["sku", "title"], ItemOptions(), "f.csv")
    with pytest.raises(InputFileError, match="no text to embed"):
        check_columns("items", ["id", "price"], ItemOptions(), "f.csv")
    with pytest.raises(InputFileError, match="'summary'"):
        check_columns("items", ["id", "title"], ItemOptions(text_columns=("title", "summary")), "f.csv")
    assert check_columns("items", ["sku", "title"], ItemOptions(id_column="sku"), "f.csv") == []
    with pytest.raises(InputFileError, match="columns 'user_id', 'item_id'"):
        check_columns("interactions", ["user", "item"], InteractionOptions(), "f.csv")
    notes = check_columns("interactions", ["user_id", "item_id", "rating"], InteractionOptions(), "f.csv")
    assert notes == ["f.csv: ignored columns: rating"]
    assert check_columns("users", ["id"], UserOptions(), "f.csv") == []


def test_prepare_collects_rejections_with_line_and_id() -> None:
    rows = numbered([{"id": "1", "title": "ok"}, {"id": "2", "title": ""}, {"title": "no id"}], start=2)
    batch = prepare_items(rows, ItemOptions(), source="f.csv", on_error="skip", schema=Schema("item"))
    assert isinstance(batch, Prepared) and batch.read == 3 and len(batch.rows) == 1
    assert [(r.line, r.field, r.id) for r in batch.rejections] == [(3, "title", "2"), (4, "id", None)]
    assert batch.rejected_ids == ["2"]
    assert str(batch.rejections[1]) == "f.csv:4: id: missing"


def test_prepare_abort_raises_the_first_rejection() -> None:
    from nearrec.ingest.records import RecordRejectedError

    rows = numbered([{"user_id": "u", "item_id": "i"}, {"user_id": "u", "item_id": "i", "value": "x"}])
    with pytest.raises(RecordRejectedError) as info:
        prepare_interactions(rows, InteractionOptions(), source="e.csv", on_error="abort")
    assert info.value.rejection.line == 2 and info.value.path == "value"
