"""Reads of the dashboard (``/dashboard``). All of its SQL lives here; every function only reads."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVarTuple

from sqlalchemy import Date, Integer, Row, Select, bindparam, cast, func, or_, select
from sqlalchemy.dialects.postgresql import REGCLASS
from sqlalchemy.orm import Session

from nearrec.postgres.models import Interaction, Item, OutboxRow, User

SEARCH_LIMIT = 50
_Row = TypeVarTuple("_Row")


@dataclass(frozen=True, slots=True)
class Counts:
    items: int
    active_items: int
    users: int
    interactions: int


def counts(session: Session) -> Counts:
    """Exact row counts (a scan of each table: callers cache the result)."""
    items = session.execute(select(func.count(), func.count().filter(Item.active)).select_from(Item)).one()
    users = session.execute(select(func.count()).select_from(User)).scalar_one()
    interactions = session.execute(select(func.count()).select_from(Interaction)).scalar_one()
    return Counts(int(items[0]), int(items[1]), int(users), int(interactions))


def interactions_per_day(session: Session, days: int) -> list[tuple[date, int]]:
    """Interactions per UTC day over the ``days`` days that end with the most recent interaction, every day
    present (zero when none). Empty when there are no interactions."""
    last = session.execute(select(func.max(Interaction.occurred_at))).scalar_one()
    if last is None:
        return []
    end = last.astimezone(UTC).date()
    start = end - timedelta(days=days - 1)
    day = cast(func.timezone("UTC", Interaction.occurred_at), Date).label("day")
    since = datetime.combine(start, time.min, tzinfo=UTC)
    rows = session.execute(
        select(day, func.count()).where(Interaction.occurred_at >= since).group_by(day).order_by(day)
    )
    found = {r[0]: int(r[1]) for r in rows}
    return [(start + timedelta(days=n), found.get(start + timedelta(days=n), 0)) for n in range(days)]


@dataclass(frozen=True, slots=True)
class Backlog:
    pending: int
    parked: int
    retrying: int
    oldest_pending_seconds: float | None


def backlog(session: Session) -> Backlog:
    pending = OutboxRow.failed_at.is_(None)
    row = session.execute(
        select(
            func.count().filter(pending),
            func.count().filter(OutboxRow.failed_at.is_not(None)),
            func.count().filter(pending, OutboxRow.attempts > 0),
            func.extract("epoch", func.now() - func.min(OutboxRow.created_at).filter(pending)),
        )
    ).one()
    oldest = None if row[3] is None else float(row[3])
    return Backlog(int(row[0]), int(row[1]), int(row[2]), oldest)


@dataclass(frozen=True, slots=True)
class ItemDetail:
    id: int
    external_id: str
    title: str | None
    text: str | None
    attributes: dict[str, Any]
    active: bool
    content_hash: str
    created_at: datetime
    updated_at: datetime
    interactions: int
    pending_sync: int


def item_detail(session: Session, external_id: str) -> ItemDetail | None:
    """The item row, its interaction count and the outbox rows still waiting for it."""
    n_interactions = (
        select(func.count()).where(Interaction.item_id == Item.id).correlate(Item).scalar_subquery()
    )
    pending = (
        select(func.count())
        .where(OutboxRow.entity == "item", OutboxRow.entity_id == Item.id, OutboxRow.failed_at.is_(None))
        .correlate(Item)
        .scalar_subquery()
    )
    row = session.execute(
        select(
            Item.id, Item.external_id, Item.title, Item.text, Item.attributes, Item.active,
            Item.content_hash, Item.created_at, Item.updated_at, n_interactions, pending,
        ).where(Item.external_id == external_id)
    ).first()  # fmt: skip
    return None if row is None else ItemDetail(*row)


@dataclass(frozen=True, slots=True)
class ItemHit:
    external_id: str
    title: str | None
    active: bool


CONTAINS_MIN = 3
"""The shortest query searched as a substring: the trigram indexes answer from three characters on (a
shorter one would scan every item); a shorter query finds the item with exactly that id."""
CANDIDATES = 1000
"""Substring matches read at most: the listed ones are the first ``limit`` of these by id."""


@dataclass(frozen=True, slots=True)
class ItemMatches:
    hits: list[ItemHit]
    more: bool  # more items match than are listed
    too_short: bool  # the query was shorter than CONTAINS_MIN (only the exact id was looked up)


def _contains(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere (its own wildcards escaped with ``/``)."""
    return "%" + text.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"


def find_items(session: Session, query: str, limit: int = SEARCH_LIMIT) -> ItemMatches:
    """The item whose id is ``query`` (if any), then items whose id or title contains it (case-insensitive),
    by id. See :func:`_containing`."""
    q = query.strip()
    columns = (Item.external_id, Item.title, Item.active)
    exact = [ItemHit(*r) for r in session.execute(select(*columns).where(Item.external_id == q))]
    if len(q) < CONTAINS_MIN:
        return ItemMatches(exact, False, True)
    pattern = _contains(q)
    where = or_(
        func.lower(Item.external_id).ilike(pattern, escape="/"),
        func.lower(Item.title).ilike(pattern, escape="/"),
    )
    rows, more = _containing(
        session, select(*columns).where(where, Item.external_id != q), limit - len(exact)
    )
    return ItemMatches(exact + [ItemHit(*r) for r in rows], more, False)


def _containing(session: Session, stmt: Select[*_Row], limit: int) -> tuple[list[Row[*_Row]], bool]:
    """The first ``limit`` rows of ``stmt`` by its first column, and whether there are more. The ILIKE of
    ``stmt`` (on ``lower(column)``) is answered by the trigram indexes (migrations 0004, 0006); the matches are read unordered and at most
    :data:`CANDIDATES` of them (a query most rows match, such as a shared id prefix, stops early instead of
    sorting the table), then sorted."""
    # The limits are written into the statement (our own integers), not bound: a statement run often is
    # prepared, and the generic plan of a prepared statement with LIMIT $n assumes a small limit, for which
    # a sequential scan looks cheaper than the trigram index (100k items: ~100 ms instead of ~5 ms).
    candidates = bindparam("candidates", CANDIDATES, type_=Integer, literal_execute=True)
    found = stmt.limit(candidates).subquery()
    shown = bindparam("shown", limit + 1, type_=Integer, literal_execute=True)
    rows = list(session.execute(select(found).order_by(found.c[0]).limit(shown)).all())
    return rows[:limit], len(rows) > limit


def newest_items(session: Session, limit: int = 20) -> list[ItemHit]:
    stmt = select(Item.external_id, Item.title, Item.active).order_by(Item.id.desc()).limit(limit)
    return [ItemHit(*r) for r in session.execute(stmt)]


@dataclass(frozen=True, slots=True)
class UserDetail:
    id: int
    external_id: str
    profile: str | None
    attributes: dict[str, Any]
    created_at: datetime
    interactions: int


def user_detail(session: Session, external_id: str) -> UserDetail | None:
    n = select(func.count()).where(Interaction.user_id == User.id).correlate(User).scalar_subquery()
    row = session.execute(
        select(User.id, User.external_id, User.profile, User.attributes, User.created_at, n).where(
            User.external_id == external_id
        )
    ).first()
    return None if row is None else UserDetail(*row)


@dataclass(frozen=True, slots=True)
class UserMatches:
    ids: list[str]
    more: bool
    too_short: bool


def find_users(session: Session, query: str, limit: int = SEARCH_LIMIT) -> UserMatches:
    """The user whose id is ``query`` (if any), then user ids containing it (as :func:`find_items`)."""
    q = query.strip()
    exact = list(session.scalars(select(User.external_id).where(User.external_id == q)))
    if len(q) < CONTAINS_MIN:
        return UserMatches(exact, False, True)
    where = func.lower(User.external_id).ilike(_contains(q), escape="/")
    rows, more = _containing(
        session, select(User.external_id).where(where, User.external_id != q), limit - len(exact)
    )
    return UserMatches(exact + [r[0] for r in rows], more, False)


_LAST_ID = select(
    func.pg_sequence_last_value(cast(func.pg_get_serial_sequence("interactions", "id"), REGCLASS))
)


def recently_active_users(session: Session, limit: int = 20) -> list[str]:
    """The users of the most recently recorded interactions (newest first): the rows with the highest ids,
    found from the identity sequence's last value through the BRIN index on ``id`` (there is no b-tree on
    it, and ``occurred_at`` has a BRIN index only, which gives no order). The id window widens while it
    holds too few rows (deleted ones)."""
    last = session.scalar(_LAST_ID)
    if last is None:
        return []
    wanted, window = limit * 20, limit * 20
    while True:
        floor = int(last) - window
        recent = (
            select(Interaction.user_id, Interaction.id)
            .where(Interaction.id > floor)
            .order_by(Interaction.id.desc())
            .limit(wanted)
            .subquery()
        )
        stmt = (
            select(User.external_id, func.count())
            .join(recent, recent.c.user_id == User.id)
            .group_by(User.external_id)
            .order_by(func.max(recent.c.id).desc())
        )
        rows = session.execute(stmt).all()
        if floor <= 0 or sum(int(n) for _, n in rows) >= wanted:
            return [str(external_id) for external_id, _ in rows[:limit]]
        window *= 16


@dataclass(frozen=True, slots=True)
class HistoryRow:
    occurred_at: datetime
    item_id: str
    title: str | None
    type: str
    value: float | None


def history(session: Session, user_id: int, limit: int, offset: int) -> list[HistoryRow]:
    """One page of the user's interactions, newest first. The page is cut from the user's interactions
    alone (backwards along ``ix_interactions_user_time``), then only its rows are joined to their items: a
    deep page skips rows without looking their items up."""
    page = (
        select(
            Interaction.id, Interaction.item_id, Interaction.occurred_at, Interaction.type, Interaction.value
        )
        .where(Interaction.user_id == user_id)
        .order_by(Interaction.occurred_at.desc(), Interaction.id.desc())
        .limit(limit)
        .offset(offset)
        .subquery()
    )
    stmt = (
        select(page.c.occurred_at, Item.external_id, Item.title, page.c.type, page.c.value)
        .join(Item, Item.id == page.c.item_id)
        .order_by(page.c.occurred_at.desc(), page.c.id.desc())
    )
    return [HistoryRow(*r) for r in session.execute(stmt)]


def seen_among(
    session: Session, user_id: int, external_ids: Sequence[str], types: Collection[str] | None
) -> set[str]:
    """Which of ``external_ids`` the user has an interaction with (of ``types``; any type when None)."""
    if not external_ids:
        return set()
    stmt = (
        select(Item.external_id)
        .join(Interaction, Interaction.item_id == Item.id)
        .where(Interaction.user_id == user_id, Item.external_id.in_(list(external_ids)))
        .distinct()
    )
    if types is not None:
        stmt = stmt.where(Interaction.type.in_(list(types)))
    return set(session.scalars(stmt))


def seen_count(session: Session, user_id: int, types: Collection[str] | None) -> int:
    """Distinct items the user has seen (interactions of ``types``; any type when None)."""
    stmt = select(func.count(func.distinct(Interaction.item_id))).where(Interaction.user_id == user_id)
    if types is not None:
        stmt = stmt.where(Interaction.type.in_(list(types)))
    return int(session.execute(stmt).scalar_one())
