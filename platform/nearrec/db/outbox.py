"""Enqueueing vector work. Called inside the transaction that makes the change (the transactional outbox).

Both functions also queue a NOTIFY so idle workers wake up at commit (see :mod:`nearrec.db.notify`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from sqlalchemy import Select, insert, literal, select
from sqlalchemy.orm import Session

from nearrec.db.models import OutboxRow
from nearrec.db.notify import notify_outbox

Entity = Literal["item", "user"]
Op = Literal["upsert", "delete"]


def enqueue(session: Session, entity: Entity, entity_ids: Iterable[int], op: Op = "upsert") -> int:
    """Add one outbox row per id (one multi-row INSERT); returns how many were added.

    Workers coalesce rows per entity, so enqueueing an id that already has pending work is harmless.
    """
    rows = [{"entity": entity, "entity_id": int(i), "op": op} for i in entity_ids]
    if rows:
        session.execute(insert(OutboxRow), rows)
        notify_outbox(session)
    return len(rows)


def enqueue_select(
    session: Session, entity: Entity, ids_query: Select[tuple[int]], op: Op = "upsert"
) -> None:
    """Enqueue the ids a one-column SELECT returns, without fetching them (INSERT ... SELECT)."""
    sub = ids_query.subquery()
    session.execute(
        insert(OutboxRow).from_select(
            ["entity", "entity_id", "op"],
            select(literal(entity), sub.c[0], literal(op)),
        )
    )
    notify_outbox(session)
