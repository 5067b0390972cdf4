"""Reads the query service needs from Postgres. All SQL of the read path lives here."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from nearrec.postgres.models import Interaction, Item


@dataclass(frozen=True, slots=True)
class UserRow:
    id: int
    external_id: str
    profile: str | None


@dataclass(frozen=True, slots=True)
class ItemRow:
    id: int
    external_id: str
    title: str | None
    attributes: dict[str, Any]
    active: bool


@dataclass(frozen=True, slots=True)
class Event:
    item_id: int
    type: str
    value: float | None


USER_WITH_HISTORY = text(
    """
    SELECT u.id, u.profile,
           ARRAY(
               SELECT i.item_id FROM interactions AS i
               WHERE i.user_id = u.id AND (CAST(:types AS text[]) IS NULL OR i.type = ANY(:types))
               GROUP BY i.item_id
               ORDER BY max(i.occurred_at) DESC, i.item_id
           ) AS seen,
           (
               SELECT coalesce(
                   json_agg(
                       json_build_array(e.item_id, e.type, e.value, extract(epoch FROM e.occurred_at))
                       ORDER BY e.occurred_at DESC, e.id DESC
                   ),
                   '[]'::json
               )
               FROM (
                   SELECT h.id, h.item_id, h.type, h.value, h.occurred_at FROM interactions AS h
                   WHERE h.user_id = u.id
                   ORDER BY h.occurred_at DESC, h.id DESC
                   LIMIT CAST(:history AS integer)
               ) AS e
           ) AS events
    FROM users AS u
    WHERE u.external_id = :external_id
    """
)


@dataclass(frozen=True, slots=True)
class TimedEvent:
    item_id: int
    type: str
    value: float | None
    timestamp: float  # unix seconds


def user_with_history(
    session: Session, external_id: str, types: Collection[str] | None, history: int
) -> tuple[UserRow, list[int], list[TimedEvent]] | None:
    """In one round trip: the user, every item they interacted with (of ``types``; all when None) most recent
    first, and their ``history`` most recent interactions (any type), most recent first."""
    row = session.execute(
        USER_WITH_HISTORY,
        {
            "external_id": external_id,
            "types": None if types is None else list(types),
            "history": max(int(history), 0),
        },
    ).first()
    if row is None:
        return None
    events = [
        TimedEvent(int(item), str(kind), None if value is None else float(value), float(epoch))
        for item, kind, value, epoch in row.events
    ]
    return UserRow(row.id, external_id, row.profile), list(row.seen), events


def recent_events(session: Session, user_id: int, limit: int) -> list[Event]:
    """The user's most recent interactions, most recent first."""
    rows = session.execute(
        select(Interaction.item_id, Interaction.type, Interaction.value)
        .where(Interaction.user_id == user_id)
        .order_by(Interaction.occurred_at.desc(), Interaction.id.desc())
        .limit(limit)
    )
    return [Event(r.item_id, r.type, r.value) for r in rows]


ITEMS_BY_IDS = text(
    "SELECT id, external_id, title, attributes, active FROM items WHERE id = ANY(CAST(:ids AS bigint[]))"
)
"""One statement text whatever the number of ids (an IN list would make a new prepared statement per size)."""


def items_by_ids(session: Session, ids: Sequence[int]) -> dict[int, ItemRow]:
    if not ids:
        return {}
    rows = session.execute(ITEMS_BY_IDS, {"ids": [int(i) for i in ids]})
    return {r.id: ItemRow(r.id, r.external_id, r.title, r.attributes, r.active) for r in rows}


def item_ids_by_external(session: Session, external_ids: Sequence[str]) -> dict[str, int]:
    if not external_ids:
        return {}
    rows = session.execute(select(Item.external_id, Item.id).where(Item.external_id.in_(list(external_ids))))
    return {r.external_id: r.id for r in rows}


def popular_item_ids(session: Session, window_days: int, limit: int) -> list[tuple[int, int]]:
    """(item id, interaction count) of active items over the last ``window_days``, most popular first."""
    since = datetime.now(UTC) - timedelta(days=window_days)
    n = func.count()
    rows = session.execute(
        select(Interaction.item_id, n.label("n"))
        .join(Item, Item.id == Interaction.item_id)
        .where(Interaction.occurred_at >= since, Item.active.is_(True))
        .group_by(Interaction.item_id)
        .order_by(n.desc(), Interaction.item_id)
        .limit(limit)
    )
    return [(r.item_id, int(r.n)) for r in rows]
