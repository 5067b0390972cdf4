"""Enqueueing vector work. Called inside the transaction that makes the change (the transactional outbox).

A trigger on ``sync_outbox`` (migration 0002) sends a NOTIFY at commit, so idle workers wake up at once
(see :mod:`nearrec.postgres.notify`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from sqlalchemy import insert
from sqlalchemy.orm import Session

from nearrec.postgres.models import OutboxRow

Entity = Literal["item", "user"]
Op = Literal["upsert", "delete"]


def enqueue(session: Session, entity: Entity, entity_ids: Iterable[int], op: Op = "upsert") -> int:
    """Add one outbox row per id (one multi-row INSERT); returns how many were added.

    Workers coalesce rows per entity, so enqueueing an id that already has pending work is harmless.
    """
    rows = [{"entity": entity, "entity_id": int(i), "op": op} for i in entity_ids]
    if rows:
        session.execute(insert(OutboxRow), rows)
    return len(rows)
