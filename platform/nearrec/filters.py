"""The filter language over item attributes, shared by the Python API, the CLI and HTTP.

A filter is a JSON object::

    {"genre": "drama"}                          equality (string, integer, float or boolean)
    {"genre": {"eq": "drama"}}                  the same, spelled out
    {"genre": {"ne": "drama"}}                  not equal (also true when the attribute is missing)
    {"genre": {"in": ["drama", "comedy"]}}      any of the values
    {"price": {"gte": 1, "lt": 10}}             range; gt / gte / lt / lte combine
    {"not": {...}}                              negation (also true when the attribute is missing)
    {"and": [{...}, ...]}  {"or": [{...}, ...]} boolean combinations
    {"genre": "drama", "year": {"gte": 1990}}   several keys in one object: all must hold

``and``, ``or`` and ``not`` are reserved words, never attribute names. Several operators on one attribute
(``{"year": {"gte": 1990, "ne": 1995}}``) must all hold.

Multi-valued (list) attributes follow Qdrant: equality and ``in`` hold when ANY element matches, a range
holds when any element lies in it.

Payload encoding (:func:`payload_value`): booleans are stored in the vector store as the integers 0 / 1,
because qdrant-edge 0.9 never matches a boolean ``MatchValue`` against a JSON boolean. The translators map a
boolean in a filter to 1 / 0 the same way (:func:`match_value`). Float equality is a closed range
``[v, v]``, because Qdrant's exact match only covers strings and integers.

:func:`read_filter` is the entry point for a filter from outside (a JSON string or a decoded object);
:func:`parse_filter` validates a decoded filter and returns a small immutable AST (:data:`FilterExpr`); with a
schema (attribute name -> :class:`FieldType`) it rejects unknown attributes and wrongly typed values. Every
error is a :class:`nearrec.errors.ValidationError` whose message starts with the path of the offending
part, e.g. ``filter.and[1].price: expected a number, got "cheap"``; the same path is in ``.path``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, NoReturn, TypeAlias

from nearrec.errors import ValidationError
from nearrec.filter_limits import check_shape

__all__ = [
    "And",
    "Eq",
    "FieldType",
    "FilterExpr",
    "In",
    "Not",
    "Or",
    "Range",
    "infer_field_type",
    "is_valid_field_name",
    "match_value",
    "matches",
    "parse_filter",
    "FilterInput",
    "read_filter",
    "payload_value",
]


class FieldType(Enum):
    """Type of a filterable attribute. Whether it holds one value or a list does not matter."""

    KEYWORD = "keyword"
    INTEGER = "integer"
    FLOAT = "float"
    BOOL = "bool"


Scalar: TypeAlias = str | int | bool
"""A value matched exactly: floats never appear here, float equality is a :class:`Range`."""


@dataclass(frozen=True, slots=True)
class Eq:
    """``field`` equals ``value`` (for a list attribute: one of its elements does)."""

    field: str
    value: Scalar


@dataclass(frozen=True, slots=True)
class In:
    """``field`` equals one of ``values`` (non-empty, all of one type: str, or int and bool)."""

    field: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class Range:
    """``field`` lies within the bounds that are set (at least one is)."""

    field: str
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


@dataclass(frozen=True, slots=True)
class Not:
    expr: FilterExpr


@dataclass(frozen=True, slots=True)
class And:
    """All of ``exprs`` hold; an empty ``And`` matches everything."""

    exprs: tuple[FilterExpr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """At least one of ``exprs`` holds (never empty)."""

    exprs: tuple[FilterExpr, ...]


FilterExpr: TypeAlias = Eq | In | Range | Not | And | Or

_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,127}")
_RESERVED = frozenset({"and", "or", "not"})
_RANGE_OPS = ("gt", "gte", "lt", "lte")
_FIELD_OPS = frozenset({"eq", "ne", "in", *_RANGE_OPS})


def is_valid_field_name(name: str) -> bool:
    """True if ``name`` can be a filterable attribute: letters, digits, ``_`` and ``-``, not reserved."""
    return bool(_FIELD_NAME.fullmatch(name)) and name not in _RESERVED


FilterInput: TypeAlias = str | Mapping[str, Any] | None
"""A filter as callers hand it over: a JSON string (CLI option, query parameter), a decoded mapping (Python
API, JSON body) or None."""


Schema: TypeAlias = Mapping[str, FieldType]


def read_filter(
    raw: FilterInput, schema: Schema | Callable[[], Schema] | None = None, path: str = "filter"
) -> FilterExpr | None:
    """THE filter parser for every entry point: decode ``raw`` if it is a JSON string, then validate it
    (:func:`parse_filter`). ``None``, ``""`` and an empty object mean "no filter" and give None. ``schema``
    may be a callable, called only when there is a filter to check (getting the schema may cost a query).

    Errors are :class:`ValidationError` naming ``path``: ``filter: invalid JSON: Expecting value at
    position 0``, ``filter.price: expected a number, got "cheap"``."""
    if raw is None or (isinstance(raw, str) and raw == ""):
        return None
    obj: Any = raw
    if isinstance(raw, str):
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"{path}: invalid JSON: {exc.msg} at position {exc.pos}", path=path
            ) from None
    if isinstance(obj, Mapping) and not obj:
        return None
    check_shape(obj, path)  # depth and integer range, before any recursion
    return parse_filter(obj, schema() if callable(schema) else schema, path)


def parse_filter(obj: Any, schema: Mapping[str, FieldType] | None = None, path: str = "filter") -> FilterExpr:
    """Validate a decoded JSON filter and return its AST. See the module docstring for the syntax."""
    if not isinstance(obj, Mapping):
        _fail(path, f"expected an object, got {_show(obj)}")
    parts: list[FilterExpr] = []
    for key, value in obj.items():
        if not isinstance(key, str):
            _fail(path, f"keys must be strings, got {_show(key)}")
        sub = f"{path}.{key}"
        if key in ("and", "or"):
            if not isinstance(value, list):
                _fail(sub, f"expected a list of filters, got {_show(value)}")
            if key == "or" and not value:
                _fail(sub, "expected a non-empty list of filters")
            children = tuple(parse_filter(v, schema, f"{sub}[{i}]") for i, v in enumerate(value))
            parts.append(And(children) if key == "and" else Or(children))
        elif key == "not":
            parts.append(Not(parse_filter(value, schema, sub)))
        else:
            parts.append(_parse_field(key, value, schema, sub))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _parse_field(name: str, cond: Any, schema: Mapping[str, FieldType] | None, path: str) -> FilterExpr:
    if not is_valid_field_name(name):
        _fail(path, "invalid attribute name (letters, digits, '_' and '-', starting with a letter or '_')")
    ftype: FieldType | None = None
    if schema is not None:
        ftype = schema.get(name)
        if ftype is None:
            known = ", ".join(sorted(schema)) or "none"
            _fail(path, f"unknown attribute {name!r} (filterable attributes: {known})")
    if not isinstance(cond, Mapping):
        return _equality(name, cond, ftype, path)
    if not cond:
        _fail(path, "expected at least one operator (eq, ne, in, gt, gte, lt, lte)")
    parts: list[FilterExpr] = []
    bounds: dict[str, float] = {}
    for op, value in cond.items():
        sub = f"{path}.{op}"
        if op not in _FIELD_OPS:
            _fail(sub, f"unknown operator {op!r} (expected one of eq, ne, in, gt, gte, lt, lte)")
        if op == "eq":
            parts.append(_equality(name, value, ftype, sub))
        elif op == "ne":
            parts.append(Not(_equality(name, value, ftype, sub)))
        elif op == "in":
            parts.append(_membership(name, value, ftype, sub))
        else:
            if ftype in (FieldType.KEYWORD, FieldType.BOOL):
                _fail(sub, f"range operators need a numeric attribute, {name!r} is {ftype.value}")
            bounds[op] = _number(value, sub)
    if bounds:
        parts.append(Range(name, **bounds))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _equality(name: str, value: Any, ftype: FieldType | None, path: str) -> FilterExpr:
    value = _scalar(value, ftype, path)
    if isinstance(value, float):
        return Range(name, gte=value, lte=value)
    return Eq(name, value)


def _membership(name: str, values: Any, ftype: FieldType | None, path: str) -> FilterExpr:
    if not isinstance(values, list) or not values:
        _fail(path, f"expected a non-empty list of values, got {_show(values)}")
    items = [_scalar(v, ftype, f"{path}[{i}]") for i, v in enumerate(values)]
    if any(isinstance(v, float) for v in items):
        if any(isinstance(v, str | bool) for v in items):
            _fail(path, "expected values of one type (numbers)")
        ranges = tuple(Range(name, gte=float(v), lte=float(v)) for v in dict.fromkeys(items))
        return ranges[0] if len(ranges) == 1 else Or(ranges)
    scalars = tuple(dict.fromkeys(v for v in items if not isinstance(v, float)))
    if any(isinstance(v, str) for v in scalars) and not all(isinstance(v, str) for v in scalars):
        _fail(path, "expected values of one type (strings or numbers)")
    return Eq(name, scalars[0]) if len(scalars) == 1 else In(name, scalars)


def _scalar(value: Any, ftype: FieldType | None, path: str) -> Scalar | float:
    if ftype is None:
        if isinstance(value, str | bool | int):
            return value
        if isinstance(value, float) and math.isfinite(value):
            return value
        _fail(path, f"expected a string, number or boolean, got {_show(value)}")
    if ftype is FieldType.KEYWORD:
        if not isinstance(value, str):
            _fail(path, f"expected a string, got {_show(value)}")
        return value
    if ftype is FieldType.BOOL:
        if not isinstance(value, bool):
            _fail(path, f"expected true or false, got {_show(value)}")
        return value
    if ftype is FieldType.INTEGER and isinstance(value, int) and not isinstance(value, bool):
        return value
    number = _number(value, path)
    if ftype is FieldType.INTEGER:
        if not number.is_integer():
            _fail(path, f"expected an integer, got {_show(value)}")
        return int(number)
    return number


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        _fail(path, f"expected a number, got {_show(value)}")
    return float(value)


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(path: str, message: str) -> NoReturn:
    raise ValidationError(f"{path}: {message}", path=path)


# --- payload encoding ---------------------------------------------------------------------------------------


def match_value(value: Scalar) -> str | int:
    """A filter value as the engines must match it: booleans become 1 / 0 (see the module docstring)."""
    if isinstance(value, bool):
        return int(value)
    return value


def payload_value(value: Any, ftype: FieldType | None = None) -> Any:
    """An attribute value as stored in the vector payload: booleans -> 0 / 1, lists kept (element-wise),
    numpy scalars -> Python numbers, integers of a FLOAT attribute -> float."""
    kind = type(value)
    if kind is str or kind is float or (kind is int and ftype is not FieldType.FLOAT):
        return value  # the common case, kept cheap: this runs for every attribute of every upserted point
    if isinstance(value, list | tuple):
        return [payload_value(v, ftype) for v in value]
    value = payload_scalar(value)
    if isinstance(value, bool):
        return int(value)
    if ftype is FieldType.FLOAT and isinstance(value, int):
        return float(value)
    return value


def infer_field_type(values: Iterable[Any], current: FieldType | None = None) -> FieldType | None:
    """The :class:`FieldType` of an attribute from its values (lists are flattened, ``None`` skipped).

    bool -> BOOL, int -> INTEGER, int and float -> FLOAT, str -> KEYWORD. ``current`` is the type already
    known (from earlier batches) and is widened INTEGER -> FLOAT when floats appear. Returns ``None`` when
    the attribute cannot be filtered on: no values, mixed kinds (strings with numbers, booleans with
    numbers), or values that are neither strings, numbers nor booleans (objects, nested lists).
    """
    kinds: set[FieldType] = set()
    if current is not None:
        kinds.add(current)
    for value in values:
        for v in value if isinstance(value, list | tuple) else (value,):
            kind = _kind(payload_scalar(v))
            if kind is None:
                if v is None:
                    continue
                return None
            kinds.add(kind)
    if not kinds:
        return None
    if kinds == {FieldType.INTEGER, FieldType.FLOAT}:
        return FieldType.FLOAT
    return kinds.pop() if len(kinds) == 1 else None


def payload_scalar(value: Any) -> Any:
    """A numpy scalar as the Python value it holds; anything else unchanged."""
    item = getattr(value, "item", None)
    if item is not None and callable(item) and not isinstance(value, str | bytes | list | tuple):
        return item()
    return value


def _kind(v: Any) -> FieldType | None:
    if isinstance(v, bool):
        return FieldType.BOOL
    if isinstance(v, int):
        return FieldType.INTEGER
    if isinstance(v, float):
        return FieldType.FLOAT if math.isfinite(v) else None
    if isinstance(v, str):
        return FieldType.KEYWORD
    return None


# --- reference evaluation -----------------------------------------------------------------------------------


def matches(expr: FilterExpr, payload: Mapping[str, Any]) -> bool:
    """Evaluate ``expr`` against a stored payload with Qdrant's semantics (used for post-filtering and as
    the reference in tests). ``payload`` holds values as produced by :func:`payload_value`."""
    if isinstance(expr, And):
        return all(matches(e, payload) for e in expr.exprs)
    if isinstance(expr, Or):
        return any(matches(e, payload) for e in expr.exprs)
    if isinstance(expr, Not):
        return not matches(expr.expr, payload)
    raw = payload.get(expr.field)
    values = raw if isinstance(raw, list) else [] if raw is None else [raw]
    if isinstance(expr, Eq):
        return any(_same(v, match_value(expr.value)) for v in values)
    if isinstance(expr, In):
        targets = [match_value(t) for t in expr.values]
        return any(_same(v, t) for v in values for t in targets)
    return any(_in_range(v, expr) for v in values)


def _same(stored: Any, target: str | int) -> bool:
    if isinstance(target, str):
        return isinstance(stored, str) and stored == target
    return isinstance(stored, int) and not isinstance(stored, bool) and stored == target


def _in_range(v: Any, r: Range) -> bool:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    return (
        (r.gt is None or v > r.gt)
        and (r.gte is None or v >= r.gte)
        and (r.lt is None or v < r.lt)
        and (r.lte is None or v <= r.lte)
    )
