"""The common rows of an item CSV batch parsed and typed by the schema a column at a time (pyarrow compute, in
C), instead of a Python call per row: the reading thread of the fast path (:mod:`nearrec.ingest.item_batches`)
then costs little next to the COPY it feeds.

It gives exactly what the row path gives (:func:`nearrec.ingest.records.parse_item`, then
:func:`nearrec.ingest.service.typed`) for the rows it takes, and marks the others *slow*: a cell that is not
valid UTF-8 or holds a NUL or another control character, a missing or long id, no text or a text past the
limit, a value its attribute's type does not take in its plain form (e.g. ``"1"`` for a bool, ``"+5"`` for an
int). Slow rows go through the row path one by one, so their rejections (file, line, field, reason) and
values are the row path's own. A batch the columns cannot type as a whole (an attribute not in the schema
yet: its type is inferred from the batch by the row path; a ``json`` attribute; a list column typed otherwise)
returns None and goes through the row path entirely.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from nearrec.ingest import values as v
from nearrec.ingest.records import ItemOptions
from nearrec.ingest.schema import Schema

# What str.strip() strips: every code point whose str.isspace() is true (a unit test checks the list).
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_CONTROL = r"[\x00-\x1f]"  # JSON must escape these; rows holding one in an attribute go the row path
_SENTENCE_END = r"[.!?:;]$"  # as values.compose_text
# Plain forms whose typed value the columns compute (any other form: the row path's coerce decides).
_INT = r"^(?:-?[1-9][0-9]{0,17}|0)$"  # its JSON is itself
_FLOAT = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"  # what float() reads
_TRUE = pa.array(["true", "True", "TRUE"])
_FALSE = pa.array(["false", "False", "FALSE"])


@dataclass(frozen=True)
class TypedColumns:
    """The batch's rows as the row path stages them (``external_id``, ``title``, ``text``, ``attributes``
    as JSON, ``content_hash``) for the rows not ``slow``, in batch order."""

    table: pa.Table
    slow: npt.NDArray[np.bool_]


def typed_columns(
    columns: Mapping[str, pa.Array], slow: npt.NDArray[np.bool_], options: ItemOptions, schema: Schema
) -> TypedColumns | None:
    """``columns``: the batch's cells decoded (NULL: not valid UTF-8); ``slow``: rows already known to need
    the row path (a NUL). None: the whole batch needs the row path (see the module's doc)."""
    if not options.list_sep or options.id_column not in columns:
        return None
    trimmed = {name: pc.utf8_trim(column, characters=WHITESPACE) for name, column in columns.items()}
    slow = slow.copy()
    for column in columns.values():
        slow |= _mask(pc.is_null(column))
    attributes = _attributes(columns, trimmed, options, schema, slow)
    if attributes is None:
        return None
    external_id = trimmed[options.id_column]
    id_length = _numpy(pc.utf8_length(external_id), 0)
    slow |= (id_length == 0) | (id_length > v.MAX_ID_CHARS)
    text_columns = options.text_columns or ()
    text = _compose([trimmed[name] for name in text_columns if name in trimmed], len(slow))
    text_length = _numpy(pc.utf8_length(text), 0)
    slow |= (text_length == 0) | (text_length > options.max_text_chars)
    if "title" in trimmed:
        title = pc.if_else(pc.equal(trimmed["title"], ""), pa.scalar(None, pa.string()), trimmed["title"])
    else:
        title = pa.nulls(len(slow), pa.string())
    keep = pa.array(~slow)
    text = text.filter(keep)
    hashes = pa.array(
        [hashlib.sha256(t).hexdigest() for t in text.cast(pa.binary()).to_pylist()], pa.string()
    )
    table = pa.table(
        {
            "external_id": external_id.filter(keep),
            "title": title.filter(keep),
            "text": text,
            "attributes": attributes.filter(keep),
            "content_hash": hashes,
        }
    )
    return TypedColumns(table, slow)


def _mask(values: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    return np.asarray(pc.fill_null(values, True).to_numpy(zero_copy_only=False), dtype=bool)


def _numpy(values: pa.Array, fill: int) -> npt.NDArray[np.int64]:
    return np.asarray(pc.fill_null(values, fill).to_numpy(zero_copy_only=False), dtype=np.int64)


def _compose(parts: Sequence[pa.Array], n: int) -> pa.Array:
    """:func:`nearrec.ingest.values.compose_text` of the text columns' (stripped) cells, row by row."""
    parts = [pc.fill_null(p, "") for p in parts]
    if not parts:
        return pa.array([""] * n, pa.string())
    if len(parts) == 1:
        return parts[0]
    if len(parts) > 2:  # an unusual choice of text columns: the general composition, in Python
        rows = zip(*(p.to_pylist() for p in parts), strict=True)
        return pa.array([v.compose_text(row) for row in rows], pa.string())
    first, second = parts
    first_empty, second_empty = pc.equal(first, ""), pc.equal(second, "")
    separator = pc.if_else(pc.match_substring_regex(first, _SENTENCE_END), " ", ". ")
    joined = pc.binary_join_element_wise(first, second, separator)
    # A second part that starts with the first (a body repeating the title) replaces it: checked in Python
    # only where the first characters agree.
    maybe = _mask(
        pc.and_(
            pc.equal(pc.utf8_slice_codeunits(first, 0, 1), pc.utf8_slice_codeunits(second, 0, 1)),
            pc.invert(first_empty),
        )
    )
    repeats = np.zeros(n, dtype=bool)
    if maybe.any():
        where = np.flatnonzero(maybe)
        index = pa.array(where)
        pairs = zip(first.take(index).to_pylist(), second.take(index).to_pylist(), strict=True)
        repeats[where] = [b.startswith(a) for a, b in pairs]
    use_second = pc.or_(first_empty, pa.array(repeats))
    return pc.if_else(second_empty, first, pc.if_else(use_second, second, joined))


def _attributes(
    columns: Mapping[str, pa.Array],
    trimmed: Mapping[str, pa.Array],
    options: ItemOptions,
    schema: Schema,
    slow: npt.NDArray[np.bool_],
) -> pa.Array | None:
    """The JSON object of each row's typed attributes (columns in file order, empty cells left out); rows
    with a value the columns cannot type are marked in ``slow``. None: the batch needs the row path."""
    fragments: list[pa.Array] = []
    for name, column in columns.items():
        if name in options.skip_columns:
            continue
        kind = schema.types.get(name)
        is_list = name in options.list_columns
        if kind is None:
            if _mask(pc.not_equal(trimmed[name], "")).any():
                return None  # a new attribute: its type comes from the batch's values (row path)
            continue
        if kind == "json" or (is_list and kind != "list"):
            return None
        if kind == "list":
            present, value = _list(column if is_list else trimmed[name], options.list_sep, slow)
            if not is_list:
                present = _mask(pc.not_equal(trimmed[name], ""))
        else:
            present, value = _scalar(trimmed[name], kind, slow)
        key = orjson.dumps(name).decode()
        fragment = pc.binary_join_element_wise(f",{key}:", pc.fill_null(value, ""), "")
        fragments.append(pc.if_else(pa.array(present), fragment, ""))
    if not fragments:
        return pa.array(["{}"] * len(slow), pa.string())
    joined = pc.binary_join_element_wise(*fragments, "")
    return pc.binary_join_element_wise("{", pc.utf8_slice_codeunits(joined, 1), "}", "")


def _scalar(
    cells: pa.Array, kind: str, slow: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.bool_], pa.Array]:
    """(present, JSON of the typed value) of a scalar attribute; a present value whose plain form the
    columns do not type makes its row slow."""
    cells = pc.fill_null(cells, "")
    present = _mask(pc.not_equal(cells, ""))
    if kind == "string":
        ok = ~_mask(pc.match_substring_regex(cells, _CONTROL))
        value = pc.binary_join_element_wise('"', _escaped(cells), '"', "")
    elif kind == "bool":
        true, false = pc.is_in(cells, value_set=_TRUE), pc.is_in(cells, value_set=_FALSE)
        ok = _mask(pc.or_(true, false))
        value = pc.if_else(true, "true", "false")
    elif kind == "int":
        ok = _mask(pc.match_substring_regex(cells, _INT))
        value = cells
    else:  # float
        ok = _mask(pc.match_substring_regex(cells, _FLOAT))
        numbers = pc.cast(pc.if_else(pa.array(ok), cells, "0"), pa.float64()).to_numpy(zero_copy_only=False)
        ok &= np.isfinite(numbers)
        numbers = np.where(ok, numbers, 0.0)
        value = pa.array(orjson.dumps(numbers, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].decode().split(","))
    slow |= present & ~ok
    return present, value


def _list(cells: pa.Array, sep: str, slow: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.bool_], pa.Array]:
    """(present, JSON array) of a list attribute: split on ``sep``, parts stripped, empty parts dropped (as
    :func:`nearrec.ingest.values.split_list`); present when a part is left."""
    cells = pc.fill_null(cells, "")
    slow |= _mask(pc.match_substring_regex(cells, _CONTROL))
    lists = pc.split_pattern(cells, pattern=sep)
    parts = pc.utf8_trim(lists.flatten(), characters=WHITESPACE)
    kept = _mask(pc.not_equal(parts, ""))
    ends = np.concatenate(([0], np.cumsum(kept)))[lists.offsets.to_numpy()]
    quoted = pc.binary_join_element_wise('"', _escaped(parts.filter(pa.array(kept))), '"', "")
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(ends, pa.int32()), quoted), ",")
    return np.diff(ends) > 0, pc.binary_join_element_wise("[", joined, "]", "")


def _escaped(cells: pa.Array) -> pa.Array:
    """The inside of a JSON string (for cells without control characters)."""
    return pc.replace_substring(pc.replace_substring(cells, "\\", "\\\\"), '"', '\\"')
