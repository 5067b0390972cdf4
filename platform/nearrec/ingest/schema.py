"""The attribute schema of items and users: one declared type per attribute, checked for every record.

Types: ``string``, ``int``, ``float``, ``bool``, ``list`` (of strings) and ``json`` (stored, never filtered).
An attribute that is not in the schema yet gets the type most of its values in the batch have (for text
cells: numbers, ``true``/``false``, else strings; a digit string with a leading zero keeps the column a
string); the values that do not fit that type are rejected, naming the field and the expected type.
``--types price=float`` declares a type up front. The schema holds at most ``max_attributes`` attributes;
a record that would add more is rejected, and so is a request (HTTP, Python API) that would add more than
``max_new`` at once, so no single request can make the worker build more than a handful of indexes.

Pure: no I/O. :mod:`nearrec.postgres.schema_repo` stores the schema; the service writes the additions of a
batch in the batch's transaction.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

from nearrec.errors import ValidationError
from nearrec.filters import FieldType
from nearrec.ingest import values as v

AttrType = Literal["string", "int", "float", "bool", "list", "json"]
TYPES: tuple[AttrType, ...] = get_args(AttrType)
Entity = Literal["item", "user"]
FIELD_TYPES: dict[AttrType, FieldType] = {
    "string": FieldType.KEYWORD,
    "int": FieldType.INTEGER,
    "float": FieldType.FLOAT,
    "bool": FieldType.BOOL,
    "list": FieldType.KEYWORD,
}
MAX_NAME_CHARS = 128
_EXPECTED: dict[AttrType, str] = {
    "string": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "list": "a list of strings",
    "json": "a JSON value",
}
_LEADING_ZERO = re.compile(r"[+-]?0[0-9]+")
_NUMBER_START = frozenset("0123456789+-.")
_BOOL_TEXT = {"true": True, "false": False, "True": True, "False": False, "TRUE": True, "FALSE": False}


def parse_types(spec: str | Iterable[str]) -> dict[str, AttrType]:
    """``"price=float,in_stock=bool"`` (or several such strings) -> {name: type}; raises ValidationError."""
    parts = [spec] if isinstance(spec, str) else list(spec)
    out: dict[str, AttrType] = {}
    for part in (p.strip() for chunk in parts for p in chunk.split(",")):
        if not part:
            continue
        name, sep, kind = part.partition("=")
        name, kind = name.strip(), kind.strip().lower()
        if not sep or not name:
            raise ValidationError(f"--types: expected NAME=TYPE, got {part!r}", path="types")
        if kind not in TYPES:
            raise ValidationError(
                f"--types: unknown type {kind!r} for {name!r} (expected one of {', '.join(TYPES)})",
                path="types",
            )
        out[name] = kind
    return out


def check_name(name: str) -> None:
    """Raise ValueError unless ``name`` can be an attribute name."""
    if not name or len(name) > MAX_NAME_CHARS or "\x00" in name:
        raise ValueError(f"invalid attribute name (1 to {MAX_NAME_CHARS} characters, no NUL)")


def kind_of(value: Any, *, text: bool) -> AttrType | Literal["leading-zero"] | None:
    """What one value looks like (None: missing). Text cells are read like CSV: numbers, true/false."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return "list"
    if text and isinstance(value, str):
        scalar = v.infer_scalar(value)
        if isinstance(scalar, str) and _LEADING_ZERO.fullmatch(scalar):
            return "leading-zero"
        value = scalar
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "json"


def infer_type(values: Iterable[Any], *, text: bool) -> AttrType:
    """The type most values have: numbers (int, or float when any is fractional), bool, list, json, else
    string. Strings win ties, and a digit string with a leading zero (a zip code, a SKU) makes it string."""
    kinds = Counter(kind_of(x, text=text) for x in values)
    kinds.pop(None, None)
    if not kinds or kinds["leading-zero"]:
        return "string"
    groups = Counter({"number": kinds["int"] + kinds["float"]})
    for kind in ("bool", "list", "json", "string"):
        groups[kind] = kinds[kind]
    best, count = max(groups.items(), key=lambda kv: (kv[1], kv[0] == "string"))
    if count * 2 <= sum(groups.values()) and best != "string":
        return "string"  # no majority
    if best == "number":
        return "float" if kinds["float"] else "int"
    return cast(AttrType, best)


def coerce(value: Any, kind: AttrType, *, text: bool, list_sep: str = "|") -> v.JsonValue:
    """``value`` as an attribute of type ``kind``; raises ValueError("expected a number, got 'abc'")."""
    if type(value) is str and text:  # the common case (CSV cells), kept cheap
        if kind == "string":
            return value
        if kind == "bool" and value in _BOOL_TEXT:
            return _BOOL_TEXT[value]
        if kind == "float" and value[:1] in _NUMBER_START:
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if math.isfinite(number) and "_" not in value:
                return number
    elif kind == "list" and type(value) is list and all(type(p) is str for p in value):
        return cast(v.JsonValue, value)  # a split text cell
    try:
        out = _coerce(value, kind, text=text, list_sep=list_sep)
    except (ValueError, TypeError):
        out = _INVALID
    if out is _INVALID:
        raise ValueError(f"expected {_EXPECTED[kind]} ({kind}), got {_show(value)}")
    return cast(v.JsonValue, out)


_INVALID = object()


def _coerce(value: Any, kind: AttrType, *, text: bool, list_sep: str) -> object:
    if kind == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return v.as_text(v.to_json(value))
        return _INVALID
    if kind == "list":
        if isinstance(value, str | list | tuple):
            parts = v.split_list(value, list_sep) if isinstance(value, str) else list(value)
            if all(isinstance(p, str | int | float) and not isinstance(p, bool) for p in parts):
                return [p if isinstance(p, str) else v.as_text(v.to_json(p)) for p in parts]
        return _INVALID
    if kind == "json":
        return v.to_json(value)
    if text and isinstance(value, str):
        value = v.infer_scalar(value)
        if kind == "bool" and isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
            return bool(value)
    if kind == "bool":
        return value if isinstance(value, bool) else _INVALID
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _INVALID
    if isinstance(value, float) and not math.isfinite(value):
        return _INVALID
    if kind == "int":
        return value if isinstance(value, int) else int(value) if value.is_integer() else _INVALID
    return float(value)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:36] + "...'"


@dataclass
class Schema:
    """The attribute types of one entity, as loaded, plus the additions not stored yet."""

    entity: Entity
    types: dict[str, AttrType] = field(default_factory=dict)
    max_attributes: int = 200
    pending: dict[str, AttrType] = field(default_factory=dict)  # added here, not stored yet

    @property
    def setting_hint(self) -> str:
        return "NEARREC_MAX_ATTRIBUTES"

    def declare(self, declared: Mapping[str, AttrType]) -> None:
        """Add declared types (``--types``). A type differing from the stored one is an error: changing a
        type re-validates the stored rows, which only ``nearrec schema set`` does."""
        for name, kind in declared.items():
            check_name(name)
            have = self.types.get(name)
            if have is not None and have != kind:
                raise ValidationError(
                    f"attribute {name!r} is {have} in the {self.entity} schema; change it with "
                    f"`nearrec schema set {self.entity}s {name}={kind}` (which re-checks the stored rows)",
                    path=name,
                )
            if have is None:
                self._add(name, kind)

    def _add(self, name: str, kind: AttrType) -> None:
        self.types[name] = kind
        self.pending[name] = kind

    def take_pending(self) -> dict[str, AttrType]:
        """The additions since the last call (to be stored with the batch that made them)."""
        out, self.pending = self.pending, {}
        return out

    def extend(
        self, records: Iterable[Mapping[str, Any]], *, text: bool, max_new: int | None
    ) -> dict[str, str]:
        """Add the attributes of a batch that the schema lacks, typed by what most of their values are.

        Returns {name: reason} for names that cannot be added (the schema is full, or more than ``max_new``
        new names); records holding them are rejected."""
        values: dict[str, list[Any]] = {}
        for record in records:
            for name, value in record.items():
                if name not in self.types:
                    values.setdefault(name, []).append(value)
        refused: dict[str, str] = {}
        if max_new is not None and len(values) > max_new:
            for name in values:
                refused[name] = (
                    f"{len(values):,} new attributes in one request; at most {max_new} may be added at "
                    f"once (declare them first with `nearrec schema set {self.entity}s NAME=TYPE ...`)"
                )
            return refused
        for name, found in values.items():
            try:
                check_name(name)
            except ValueError as exc:
                refused[name] = str(exc)
                continue
            if len(self.types) >= self.max_attributes:
                refused[name] = (
                    f"not in the {self.entity} schema, which is full ({self.max_attributes:,} attributes, "
                    f"{self.setting_hint}); remove one with `nearrec schema set {self.entity}s --drop NAME`"
                )
                continue
            self._add(name, infer_type(found, text=text))
        return refused

    def apply(self, attributes: Mapping[str, Any], *, text: bool, list_sep: str) -> dict[str, v.JsonValue]:
        """The attributes typed by the schema; raises :class:`AttributeError_` naming the first bad one."""
        out: dict[str, v.JsonValue] = {}
        types = self.types
        for name, value in attributes.items():
            kind = types.get(name)
            if kind is None:
                raise AttributeRejected(name, f"not in the {self.entity} schema")
            if kind == "string" and type(value) is str and text:  # the commonest case of coerce(), inline
                out[name] = value
                continue
            try:
                out[name] = coerce(value, kind, text=text, list_sep=list_sep)
            except ValueError as exc:
                raise AttributeRejected(name, str(exc)) from None
        return out

    def filterable(self) -> dict[str, FieldType]:
        """Attribute name -> filter type, for the attributes a filter can name."""
        from nearrec.filters import is_valid_field_name

        return {
            name: FIELD_TYPES[kind]
            for name, kind in self.types.items()
            if kind in FIELD_TYPES and is_valid_field_name(name)
        }


def filter_types(declared: Mapping[str, str]) -> dict[str, FieldType | None]:
    """The item attributes of a stored schema (name -> type name) that a store payload holds (valid field
    names, none of nearrec's own payload keys) -> their filter type (None: no filter can use the type)."""
    from nearrec.filters import is_valid_field_name
    from nearrec.vectors.payload import SYSTEM_KEYS

    return {
        name: FIELD_TYPES.get(cast(AttrType, kind))
        for name, kind in declared.items()
        if is_valid_field_name(name) and name not in SYSTEM_KEYS
    }


class AttributeRejected(ValueError):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason
