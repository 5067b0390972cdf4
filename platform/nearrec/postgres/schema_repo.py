"""Attribute schema storage (table ``attribute_schema``) and the bulk rewrites a schema change needs.
Nothing here commits."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import BigInteger, Table, Text, bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.orm import Session

from nearrec.postgres.models import AttributeSchema, Item, User
from nearrec.postgres.outbox import enqueue

_TABLES: dict[str, type[Item] | type[User]] = {"item": Item, "user": User}


def load(session: Session, entity: str) -> dict[str, str]:
    """Attribute name -> type, for ``entity`` ("item" or "user"), in the order they were added."""
    stmt = (
        select(AttributeSchema.name, AttributeSchema.type)
        .where(AttributeSchema.entity == entity)
        .order_by(AttributeSchema.created_at, AttributeSchema.name)
    )
    return {str(name): str(kind) for name, kind in session.execute(stmt)}


def add(session: Session, entity: str, types: Mapping[str, str]) -> dict[str, str]:
    """Add attributes (an existing name keeps its type). Returns {name: stored type} for the names whose
    stored type differs from the one asked for (another load declared them first)."""
    if not types:
        return {}
    rows = [{"entity": entity, "name": n, "type": t} for n, t in types.items()]
    session.execute(insert(AttributeSchema).values(rows).on_conflict_do_nothing())
    stored = load(session, entity)
    return {n: stored[n] for n, t in types.items() if stored.get(n) != t}


def set_type(session: Session, entity: str, name: str, kind: str) -> None:
    stmt = insert(AttributeSchema).values(entity=entity, name=name, type=kind)
    session.execute(stmt.on_conflict_do_update(index_elements=["entity", "name"], set_={"type": kind}))


def remove(session: Session, entity: str, name: str) -> bool:
    """Remove an attribute from the schema; True if it was there."""
    stmt = delete(AttributeSchema).where(AttributeSchema.entity == entity, AttributeSchema.name == name)
    return bool(getattr(session.execute(stmt), "rowcount", 0))


_COUNTS = {
    "item": text("SELECT k, count(*) FROM items, jsonb_object_keys(items.attributes) AS k GROUP BY k"),
    "user": text("SELECT k, count(*) FROM users, jsonb_object_keys(users.attributes) AS k GROUP BY k"),
}


def counts(session: Session, entity: str) -> dict[str, int]:
    """Attribute name -> how many rows hold it (one scan of the table)."""
    return {str(k): int(n) for k, n in session.execute(_COUNTS[entity])}


def values_of(session: Session, entity: str, name: str, chunk: int = 5000) -> Iterator[tuple[int, str, Any]]:
    """(id, external id, value) of every row that holds attribute ``name``."""
    model = _TABLES[entity]
    stmt = (
        select(model.id, model.external_id, model.attributes[name])
        .where(model.attributes.has_key(name))
        .order_by(model.id)
    )
    for row_id, external_id, value in session.execute(stmt.execution_options(yield_per=chunk)):
        yield int(row_id), str(external_id), value


_PARAMS = (bindparam("ids", type_=ARRAY(BigInteger)), bindparam("vals", type_=ARRAY(Text)))
_REWRITE = {
    "item": text(
        """
        UPDATE items AS t
        SET attributes = jsonb_set(t.attributes, ARRAY[:name], v.value::jsonb), updated_at = now()
        FROM unnest(:ids, :vals) AS v(id, value)
        WHERE t.id = v.id
        """
    ).bindparams(*_PARAMS),
    "user": text(
        """
        UPDATE users AS t
        SET attributes = jsonb_set(t.attributes, ARRAY[:name], v.value::jsonb), updated_at = now()
        FROM unnest(:ids, :vals) AS v(id, value)
        WHERE t.id = v.id
        """
    ).bindparams(*_PARAMS),
}


def rewrite(session: Session, entity: str, name: str, new_values: Mapping[int, Any]) -> None:
    """Store converted values of attribute ``name`` (id -> JSON value) and enqueue the changed items."""
    if not new_values:
        return
    for ids in _chunks(list(new_values), 5000):
        vals = [json.dumps(new_values[i], ensure_ascii=False, allow_nan=False) for i in ids]
        session.execute(_REWRITE[entity], {"name": name, "ids": list(ids), "vals": vals})
    if entity == "item":
        enqueue(session, "item", list(new_values))


def drop_values(session: Session, entity: str, name: str) -> int:
    """Remove attribute ``name`` from every row; enqueue the changed items; returns how many rows."""
    model = _TABLES[entity]
    table: Table = model.__table__  # type: ignore[assignment]
    stmt = (
        update(table)
        .where(table.c.attributes.has_key(name))
        .values(attributes=table.c.attributes.op("-")(name), updated_at=func.now())
        .returning(table.c.id)
    )
    ids = [int(i) for i in session.execute(stmt).scalars()]
    if entity == "item":
        enqueue(session, "item", ids)
    return len(ids)


def _chunks(ids: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]
