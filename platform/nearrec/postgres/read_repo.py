"""Reading items, users and a user's history back (`GET /v1/items/{id}`, `nearrec show`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nearrec.postgres.models import Interaction, Item, User


@dataclass(frozen=True, slots=True)
class ItemView:
    id: str
    title: str | None
    text: str | None
    attributes: dict[str, Any]
    active: bool
    created_at: datetime
    updated_at: datetime
    interactions: int


@dataclass(frozen=True, slots=True)
class UserView:
    id: str
    profile: str | None
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    interactions: int


@dataclass(frozen=True, slots=True)
class EventView:
    item_id: str
    item_title: str | None
    type: str
    value: float | None
    timestamp: datetime
    event_id: str | None


def get_item(session: Session, external_id: str) -> ItemView | None:
    item = session.scalars(select(Item).where(Item.external_id == external_id)).one_or_none()
    if item is None:
        return None
    count = session.scalar(select(func.count()).where(Interaction.item_id == item.id)) or 0
    return ItemView(
        item.external_id,
        item.title,
        item.text,
        dict(item.attributes),
        item.active,
        item.created_at,
        item.updated_at,
        int(count),
    )


def get_user(session: Session, external_id: str) -> UserView | None:
    user = session.scalars(select(User).where(User.external_id == external_id)).one_or_none()
    if user is None:
        return None
    count = session.scalar(select(func.count()).where(Interaction.user_id == user.id)) or 0
    return UserView(
        user.external_id, user.profile, dict(user.attributes), user.created_at, user.updated_at, int(count)
    )


def user_events(session: Session, user_external_id: str, limit: int, offset: int) -> list[EventView]:
    """A user's interactions, newest first (ties: the later write first)."""
    stmt = (
        select(Item.external_id, Item.title, Interaction.type, Interaction.value, Interaction.occurred_at,
               Interaction.event_id)
        .join(Item, Item.id == Interaction.item_id)
        .join(User, User.id == Interaction.user_id)
        .where(User.external_id == user_external_id)
        .order_by(Interaction.occurred_at.desc(), Interaction.id.desc())
        .limit(limit)
        .offset(offset)
    )  # fmt: skip
    return [EventView(*row) for row in session.execute(stmt)]
