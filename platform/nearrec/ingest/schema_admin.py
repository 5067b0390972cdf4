"""Showing and changing the attribute schema (``nearrec schema show|set``), in the caller's transaction.

A type change re-validates every stored value of the attribute: when all of them fit the new type they are
converted in place (and the items re-queued, their payload changes); when some do not, nothing changes and
the error names them. Dropping an attribute removes it from the schema and from every row, so it is no
longer filterable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from nearrec.errors import ValidationError
from nearrec.filters import is_valid_field_name
from nearrec.ingest.schema import FIELD_TYPES, AttrType, Entity, check_name, coerce
from nearrec.postgres import schema_repo

SHOWN_INVALID = 10


@dataclass(frozen=True)
class AttributeInfo:
    name: str
    type: str
    rows: int  # rows holding it
    filterable: bool


@dataclass(frozen=True)
class Change:
    name: str
    old: str | None
    new: str | None  # None: dropped
    rows: int  # rows checked (and converted where needed), or rows the attribute was removed from


def show(session: Session, entity: Entity) -> list[AttributeInfo]:
    """The schema with how many rows hold each attribute."""
    types = schema_repo.load(session, entity)
    counts = schema_repo.counts(session, entity)
    return [
        AttributeInfo(name, kind, counts.get(name, 0), kind in FIELD_TYPES and is_valid_field_name(name))
        for name, kind in types.items()
    ]


def set_types(
    session: Session, entity: Entity, types: Mapping[str, AttrType], *, max_attributes: int
) -> list[Change]:
    """Declare or change attribute types, re-validating and converting the stored values."""
    current = schema_repo.load(session, entity)
    new_names = [n for n in types if n not in current]
    if len(current) + len(new_names) > max_attributes:
        raise ValidationError(
            f"the {entity} schema would hold {len(current) + len(new_names):,} attributes; the limit is "
            f"{max_attributes:,} (NEARREC_MAX_ATTRIBUTES)"
        )
    changes: list[Change] = []
    for name, kind in types.items():
        try:
            check_name(name)
        except ValueError as exc:
            raise ValidationError(f"{name!r}: {exc}", path=name) from None
        old = current.get(name)
        converted: dict[int, object] = {}
        invalid: list[str] = []
        rows = 0
        for row_id, external_id, value in schema_repo.values_of(session, entity, name):
            rows += 1
            try:
                new_value = coerce(value, kind, text=False)
            except ValueError as exc:
                invalid.append(f"{external_id} ({exc})")
                continue
            if new_value != value or type(new_value) is not type(value):
                converted[row_id] = new_value
        if invalid:
            shown = "; ".join(invalid[:SHOWN_INVALID])
            more = f"; and {len(invalid) - SHOWN_INVALID:,} more" if len(invalid) > SHOWN_INVALID else ""
            raise ValidationError(
                f"{name}={kind}: {len(invalid):,} stored {entity}s do not fit: {shown}{more}. Nothing was "
                f"changed; fix those rows, or drop the attribute with --drop {name}",
                path=name,
            )
        schema_repo.rewrite(session, entity, name, converted)
        schema_repo.set_type(session, entity, name, kind)
        changes.append(Change(name, old, kind, rows))
    return changes


def drop(session: Session, entity: Entity, names: Sequence[str]) -> list[Change]:
    """Remove attributes from the schema and from every row (items are re-queued)."""
    current = schema_repo.load(session, entity)
    unknown = [n for n in names if n not in current]
    if unknown:
        raise ValidationError(
            f"not in the {entity} schema: {', '.join(unknown)} (attributes: {', '.join(current) or 'none'})"
        )
    changes = []
    for name in names:
        rows = schema_repo.drop_values(session, entity, name)
        schema_repo.remove(session, entity, name)
        changes.append(Change(name, current[name], None, rows))
    return changes
