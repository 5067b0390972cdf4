"""Validation of one raw record (a mapping from a file row or an HTTP body) into what is stored.

Parsers raise :class:`RowError` naming the field; the service turns that into a :class:`Rejection` with the
file and line. Column rules:

- items: ``id`` (``--id-column``) is required. ``title`` is the display title. The embedded document is
  composed from the text columns (default: ``title`` then ``text`` or ``description``). Every other column
  becomes a typed attribute; the document columns ``title``, ``text`` and ``description`` never do.
- users: ``id`` is required; the profile is composed from the text columns (default ``profile``); every
  other column is an attribute.
- interactions: ``user_id`` and ``item_id`` are required; ``type``, ``value``, ``timestamp`` and
  ``event_id`` are optional; other columns are ignored.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

from nearrec.config import setting_default
from nearrec.errors import InputFileError, ValidationError
from nearrec.ingest import values as v

ITEM_DOCUMENT_COLUMNS = ("title", "text", "description")
INTERACTION_COLUMNS = ("user_id", "item_id", "type", "value", "timestamp", "event_id")


class RowError(ValueError):
    """One record is invalid: ``field`` (None for the row as a whole) and a short reason."""

    def __init__(self, field: str | None, reason: str, record_id: str | None = None) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason
        self.record_id = record_id


@dataclass(frozen=True)
class Rejection:
    """A rejected record, as reported on stderr and written to ``--rejects`` (JSON Lines)."""

    file: str
    line: int
    field: str | None
    reason: str
    id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "field": self.field,
            "reason": self.reason,
            "id": self.id,
        }

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.reason}" if self.field else f"{where}: {self.reason}"


class RecordRejectedError(ValidationError):
    """Raised instead of skipping when ``on_error="abort"``; carries the first rejection."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(str(rejection), path=rejection.field)
        self.rejection = rejection


MAX_TEXT_CHARS: int = setting_default("max_text_chars")
"""Default of the options' ``max_text_chars`` (``Settings.max_text_chars``)."""


@dataclass(frozen=True)
class ItemOptions:
    id_column: str = "id"
    text_columns: tuple[str, ...] | None = None  # None: title + text/description
    list_columns: frozenset[str] = frozenset()
    list_sep: str = "|"
    ignore_columns: frozenset[str] = frozenset()
    max_text_chars: int = MAX_TEXT_CHARS
    infer_types: bool = False  # True for text cells (CSV): the schema reads "12" as 12, "true" as True
    types: Mapping[str, str] = field(default_factory=dict)  # declared with --types
    max_new_attributes: int | None = None  # per request (HTTP, Python API); None: files

    @cached_property
    def skip_columns(self) -> frozenset[str]:
        """Columns that never become attributes."""
        return frozenset({self.id_column, *ITEM_DOCUMENT_COLUMNS, *self.ignore_columns})


@dataclass(frozen=True)
class UserOptions:
    id_column: str = "id"
    text_columns: tuple[str, ...] | None = None  # None: profile
    list_columns: frozenset[str] = frozenset()
    list_sep: str = "|"
    ignore_columns: frozenset[str] = frozenset()
    max_text_chars: int = MAX_TEXT_CHARS
    infer_types: bool = False
    types: Mapping[str, str] = field(default_factory=dict)
    max_new_attributes: int | None = None

    @cached_property
    def skip_columns(self) -> frozenset[str]:
        """Columns that never become attributes."""
        return frozenset({self.id_column, "profile", *(self.text_columns or ()), *self.ignore_columns})


@dataclass(frozen=True)
class InteractionOptions:
    default_type: str = "view"
    create_missing_items: bool = False
    # The configured interaction types (NEARREC_INTERACTION_WEIGHTS); None accepts any type.
    types: frozenset[str] | None = None
    # Latest accepted timestamp (unix seconds): now + NEARREC_MAX_FUTURE_SKEW_SECONDS. None: no bound.
    max_timestamp: float | None = None


class ItemRecord(NamedTuple):
    external_id: str
    title: str | None
    text: str
    attributes: dict[str, Any]  # not typed yet: see nearrec.ingest.schema
    content_hash: str
    nuls: int = 0  # NUL characters stripped from the texts and attributes


class UserRecord(NamedTuple):
    external_id: str
    profile: str | None
    attributes: dict[str, Any]  # not typed yet
    nuls: int = 0


class InteractionRecord(NamedTuple):
    user_id: str
    item_id: str
    type: str
    value: float | None
    timestamp: float | None  # unix seconds; None: now
    event_id: str | None


def item_text_columns(options: ItemOptions, columns: Collection[str]) -> tuple[str, ...]:
    """The columns composed into the embedded text, for a file with these columns."""
    if options.text_columns is not None:
        return options.text_columns
    body = next((c for c in ("text", "description") if c in columns), None)
    return tuple(c for c in ("title", body) if c is not None and c in columns)


def user_text_columns(options: UserOptions, columns: Collection[str]) -> tuple[str, ...]:
    """The columns composed into the profile text."""
    if options.text_columns is not None:
        return options.text_columns
    return ("profile",) if "profile" in columns else ()


def check_columns(kind: str, columns: Sequence[str], options: Any, file: str) -> list[str]:
    """Fail early when a required column is missing; return notes (e.g. ignored columns)."""
    present = set(columns)
    found = ", ".join(repr(c) for c in columns) or "none"
    if kind == "interactions":
        required: list[str] = ["user_id", "item_id"]
    else:
        required = [options.id_column]
        if kind == "items" and options.text_columns is None and not item_text_columns(options, present):
            raise InputFileError(
                file, f"no text to embed: expected a 'title', 'text' or 'description' column (found {found})"
            )
        required += list(options.text_columns or ())
    missing = [c for c in required if c not in present]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        plural = "s" if len(missing) > 1 else ""
        raise InputFileError(file, f"missing required column{plural} {names} (found {found})")
    if kind == "interactions":
        ignored = [c for c in columns if c not in INTERACTION_COLUMNS]
        if ignored:
            return [f"{file}: ignored columns: {', '.join(ignored)}"]
    return []


def _id(raw: Mapping[str, Any], column: str) -> str:
    value = raw.get(column)
    if type(value) is str:
        text = value.strip()
        if text and len(text) <= v.MAX_ID_CHARS and "\x00" not in text:
            return text
    if v.is_blank(value):
        raise RowError(column, "missing")
    try:
        return v.external_id(value)
    except ValueError as exc:
        raise RowError(column, str(exc)) from None


def _attributes(
    raw: Mapping[str, Any],
    skip: Collection[str],
    list_columns: Collection[str],
    list_sep: str,
    text_cells: bool,
    record_id: str,
) -> tuple[dict[str, Any], int]:
    """The attribute values of a record, not typed yet (the schema types them), and the NULs stripped.

    Text cells stay text (stripped; empty ones are missing); list columns are split; typed values (JSON,
    Parquet) are converted to JSON values (NaN and infinity are rejected)."""
    attributes: dict[str, Any] = {}
    nuls = 0
    for name, value in raw.items():
        if name in skip or value is None:
            continue
        try:
            if name in list_columns:
                parts = v.split_list(value, list_sep)
                if parts and type(value) is str and "\x00" not in value:  # the common case, kept cheap
                    attributes[name] = parts
                elif parts:
                    attributes[name], n = v.strip_nul_json(parts)
                    nuls += n
                continue
            if type(value) is str:
                converted: Any = value.strip() or None
                if converted is None:
                    continue
                if not text_cells:
                    converted = value
                if "\x00" not in converted:  # the common case, kept cheap
                    attributes[name] = converted
                    continue
            else:
                converted = v.to_json(value)
            if converted is not None and converted != []:  # an empty list is a missing value, as in CSV
                attributes[name], n = v.strip_nul_json(converted)
                nuls += n
        except ValueError as exc:
            raise RowError(name, str(exc), record_id) from None
    return attributes, nuls


def _text(raw: Mapping[str, Any], columns: Sequence[str], limit: int, record_id: str) -> tuple[str, int]:
    parts: list[str] = []
    nuls = 0
    for name in columns:
        value = raw.get(name)
        part = value.strip() if type(value) is str else "" if v.is_blank(value) else v.as_text(value)
        part, n = v.strip_nul(part)
        nuls += n
        parts.append(part.strip() if n else part)
    text = v.compose_text(parts)
    if len(text) > limit:
        longest = max(columns, key=lambda c: len(parts[columns.index(c)]))
        raise RowError(
            longest,
            f"text is {len(text):,} characters; the limit is {limit:,} (NEARREC_MAX_TEXT_CHARS)",
            record_id,
        )
    return text, nuls


def parse_item(raw: Mapping[str, Any], options: ItemOptions) -> ItemRecord:
    """Validate one item record; raises :class:`RowError`. Attributes are not typed yet (see
    :mod:`nearrec.ingest.schema`)."""
    external_id = _id(raw, options.id_column)
    text_columns = options.text_columns or item_text_columns(options, raw.keys())
    text, nuls = _text(raw, text_columns, options.max_text_chars, external_id)
    if not text:
        names = "/".join(text_columns) or "title/text/description"
        raise RowError(names, "no text to embed (all text columns are empty)", external_id)
    title_value = raw.get("title")
    if type(title_value) is str:
        title: str | None = title_value.strip() or None
    else:
        title = None if v.is_blank(title_value) else v.as_text(title_value)
    if title is not None and "\x00" in title:
        title = v.strip_nul(title)[0].strip() or None  # counted with the text
    attributes, attr_nuls = _attributes(
        raw, options.skip_columns, options.list_columns, options.list_sep, options.infer_types, external_id
    )
    return ItemRecord(external_id, title, text, attributes, v.content_hash(text), nuls + attr_nuls)


def parse_user(raw: Mapping[str, Any], options: UserOptions) -> UserRecord:
    """Validate one user record; raises :class:`RowError`."""
    external_id = _id(raw, options.id_column)
    text_columns = user_text_columns(options, raw.keys())
    profile, nuls = _text(raw, text_columns, options.max_text_chars, external_id)
    attributes, attr_nuls = _attributes(
        raw, options.skip_columns, options.list_columns, options.list_sep, options.infer_types, external_id
    )
    return UserRecord(external_id, profile or None, attributes, nuls + attr_nuls)


def _optional_id(raw: Mapping[str, Any], column: str) -> str | None:
    value = raw.get(column)
    if type(value) is str:
        text = value.strip()
        if not text:
            return None
        if len(text) <= v.MAX_ID_CHARS and "\x00" not in text:
            return text
    if v.is_blank(value):
        return None
    try:
        return v.external_id(value)
    except ValueError as exc:
        raise RowError(column, str(exc)) from None


def _optional_float(raw: Mapping[str, Any], column: str) -> float | None:
    value = raw.get(column)
    if type(value) is float and value != value:
        raise RowError(column, "NaN is not a number")
    if type(value) is str:
        try:
            number = float(value)
            if number - number == 0.0:  # finite
                return number
        except ValueError:
            pass
    if v.is_blank(value):
        return None
    try:
        return v.parse_float(value)
    except ValueError as exc:
        raise RowError(column, str(exc)) from None


def _optional_timestamp(raw: Mapping[str, Any], column: str, latest: float | None) -> float | None:
    value = raw.get(column)
    if type(value) is str:
        text = value.strip()
        if text.isascii() and text.isdigit():  # the common case: unix seconds or milliseconds
            seconds = float(text)
            if seconds >= v.MS_THRESHOLD:
                seconds /= 1000.0
            if latest is not None and seconds <= latest:
                return seconds
    if type(value) is float and value != value:
        raise RowError(column, "NaN is not a timestamp")
    if v.is_blank(value):
        return None
    try:
        return v.parse_timestamp(value, latest)
    except ValueError as exc:
        raise RowError(column, str(exc)) from None


def parse_interaction(raw: Mapping[str, Any], options: InteractionOptions) -> InteractionRecord:
    user_id = _id(raw, "user_id")
    item_id = _id(raw, "item_id")
    kind = raw.get("type")
    if v.is_blank(kind):
        kind = options.default_type
    elif not isinstance(kind, str):
        raise RowError("type", f"must be a string, not {type(kind).__name__}")
    else:
        kind = kind.strip().lower()
    if options.types is not None and kind not in options.types:
        raise RowError("type", unknown_type_reason(kind, options.types))
    return InteractionRecord(
        user_id,
        item_id,
        kind,
        _optional_float(raw, "value"),
        _optional_timestamp(raw, "timestamp", options.max_timestamp),
        _optional_id(raw, "event_id"),
    )


def unknown_type_reason(kind: str, known: Collection[str]) -> str:
    """Why an interaction type is refused, listing the known ones."""
    shown = kind if len(kind) <= 40 else kind[:37] + "..."
    return (
        f"unknown interaction type {shown!r} (known: {', '.join(sorted(known))}; "
        "the types are the keys of NEARREC_INTERACTION_WEIGHTS)"
    )
