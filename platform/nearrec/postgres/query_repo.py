"""Reads the query service needs from Postgres. All SQL of the read path lives here."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, overload

import numpy as np
import psycopg
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nearrec.postgres.models import Interaction, Item
from nearrec.vectors.base import AnyVector, Sparse


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


USER_WITH_HISTORY = """
    SELECT u.id, u.profile,
           ARRAY(
               SELECT i.item_id FROM interactions AS i
               WHERE i.user_id = u.id AND (CAST(%(types)s AS text[]) IS NULL OR i.type = ANY(%(types)s))
               ORDER BY i.occurred_at DESC, i.item_id
           ) AS seen,
           ev.ids, ev.items, ev.types, ev.vals, ev.stamps,
           ARRAY(
               SELECT x.id FROM items AS x WHERE x.external_id = ANY(CAST(%(excluded)s AS text[]))
           ) AS excluded,
           ARRAY(
               SELECT DISTINCT o.entity_id FROM sync_outbox AS o
               WHERE o.entity = 'item'
               ORDER BY o.entity_id
               LIMIT CAST(%(pending)s AS integer)
           ) AS pending,
           f.fresh, CASE WHEN f.fresh THEN u.cf_indices END, CASE WHEN f.fresh THEN u.cf_vector END
    FROM users AS u
    CROSS JOIN LATERAL (
        SELECT coalesce(u.cf_tag = CAST(%(cf_tag)s AS text), false) AND NOT EXISTS (
                   SELECT FROM sync_outbox AS r WHERE r.entity = 'user' AND r.entity_id = u.id
               ) AS fresh
        OFFSET 0
    ) AS f
    CROSS JOIN LATERAL (
        SELECT array_agg(e.id) AS ids, array_agg(e.item_id) AS items, array_agg(e.type) AS types,
               array_agg(e.value) AS vals, array_agg(date_part('epoch', e.occurred_at)) AS stamps
        FROM (
            SELECT h.id, h.item_id, h.type, h.value, h.occurred_at FROM interactions AS h
            WHERE h.user_id = u.id AND NOT f.fresh
            ORDER BY h.occurred_at DESC, h.id DESC
            LIMIT CAST(%(history)s AS integer)
        ) AS e
    ) AS ev
    WHERE u.external_id = %(external_id)s
"""
"""Everything a recommendation reads from Postgres, in one statement: the user's row, interactions and
recent events (or the stored cf vector instead), the internal ids of the excluded items, and the items whose
Postgres state the store does not hold yet (a row in ``sync_outbox``: the worker writes the store, then
deletes the rows in the same transaction, see :mod:`nearrec.sync.worker`; parked rows count too). The seen ids
come back newest first, repeats included (no GROUP BY: the backward index scan is already in order); the first
occurrence of each item is at its most recent time, so dropping the repeats gives the order of
``max(occurred_at) DESC, item_id``. The recent events come as one array per column (a third cheaper than JSON
rows, in Postgres and to decode); an aggregate's input order is not guaranteed, so their ids come too and the
order is checked (:meth:`History.newest_first`).

``fresh``: the user's stored cf vector (``users.cf_vector``, written by the worker with the fold-in of
:data:`USER_EVENTS` in the transaction that deletes the user's outbox rows) is what the fold-in of the events
would give now: its tag is ``cf_tag`` (the serving model's, :func:`nearrec.query.collaborative.cf_tag`; NULL:
not wanted) and the user has no outbox row in any state (every committed interaction leaves one until a
refresh that read it commits). Then the vector comes back instead of the events: the events' scan is gated by
``NOT f.fresh``, a one-time filter, so Postgres does not run it."""

USER_EVENTS = """
    SELECT u.id, ev.ids, ev.items, ev.types, ev.vals, ev.stamps
    FROM unnest(CAST(%(ids)s AS bigint[])) AS u(id)
    CROSS JOIN LATERAL (
        SELECT array_agg(e.id) AS ids, array_agg(e.item_id) AS items, array_agg(e.type) AS types,
               array_agg(e.value) AS vals, array_agg(date_part('epoch', e.occurred_at)) AS stamps
        FROM (
            SELECT h.id, h.item_id, h.type, h.value, h.occurred_at FROM interactions AS h
            WHERE h.user_id = u.id
            ORDER BY h.occurred_at DESC, h.id DESC
            LIMIT CAST(%(history)s AS integer)
        ) AS e
    ) AS ev
"""
"""The recent events of several users, exactly as :data:`USER_WITH_HISTORY` reads one user's (the same
columns, order and limit): what the worker folds into the stored cf vectors."""


@dataclass(frozen=True, slots=True)
class TimedEvent:
    item_id: int
    type: str
    value: float | None
    timestamp: float  # unix seconds


class History(Sequence[TimedEvent]):
    """Interactions, most recent first, as columns: what the query-time fold-in reads (200 event objects
    cost more to build than the fold-in itself). Indexing gives :class:`TimedEvent` s."""

    __slots__ = ("item_ids", "timestamps", "types", "values")

    def __init__(
        self, item_ids: list[int], types: list[str], values: list[float | None], timestamps: list[float]
    ) -> None:
        self.item_ids, self.types, self.values, self.timestamps = item_ids, types, values, timestamps

    @classmethod
    def newest_first(
        cls,
        ids: list[int],
        items: list[int],
        types: list[str],
        values: list[float | None],
        stamps: list[float],
    ) -> History:
        """The columns of events with their interaction ids, in the order ``occurred_at DESC, id DESC``
        (already so unless the aggregate that built them reordered them)."""
        t, i = np.asarray(stamps, dtype=np.float64), np.asarray(ids, dtype=np.int64)
        if np.all((t[:-1] > t[1:]) | ((t[:-1] == t[1:]) & (i[:-1] > i[1:]))):
            return cls(items, types, values, stamps)
        order = np.lexsort((-i, -t)).tolist()
        return cls([items[n] for n in order], [types[n] for n in order], [values[n] for n in order],
                   [stamps[n] for n in order])  # fmt: skip

    @classmethod
    def of(cls, events: Sequence[TimedEvent]) -> History:
        if isinstance(events, History):
            return events
        return cls(
            [e.item_id for e in events], [e.type for e in events], [e.value for e in events],
            [e.timestamp for e in events],
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.item_ids)

    def __eq__(self, other: object) -> bool:
        """Equal to a sequence of the same events (a list of :class:`TimedEvent` s too)."""
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    @overload
    def __getitem__(self, index: int) -> TimedEvent: ...

    @overload
    def __getitem__(self, index: slice) -> list[TimedEvent]: ...

    def __getitem__(self, index: int | slice) -> TimedEvent | list[TimedEvent]:
        if isinstance(index, slice):
            return [self[n] for n in range(*index.indices(len(self)))]
        value = self.values[index]
        return TimedEvent(
            int(self.item_ids[index]), str(self.types[index]), None if value is None else float(value),
            float(self.timestamps[index]),
        )  # fmt: skip


def driver(session: Session | psycopg.Connection[Any]) -> Any:
    """The psycopg connection under the session's (or the connection itself, as
    :func:`nearrec.postgres.engine.read_connection` gives it). The per-request reads below run on it directly:
    through SQLAlchemy's execute and result layers the same statement costs 3-4x the CPU (0.3-0.6 ms a
    statement on the test machine, more than Postgres spends on it). Constant statements, bound parameters,
    prepared by psycopg after a few runs; in the session's transaction if it has one."""
    if isinstance(session, Session):
        return session.connection().connection.driver_connection
    return session


@dataclass(frozen=True, slots=True)
class UserRead:
    """What :func:`user_request` read."""

    user: UserRow
    seen: list[int]  # every item interacted with (of the seen types), most recent first, once each
    events: History  # the most recent interactions (any type), most recent first
    excluded: list[int]  # the internal ids of the excluded external ids that exist
    pending: list[int]  # items with a pending outbox row (at most the ``pending`` asked for)
    folded: bool = False  # the stored cf vector is usable (then ``events`` is empty): ``cf`` is the fold-in
    cf: AnyVector | None = None  # the stored fold-in (None: the fold-in gives no vector)


def user_request(
    session: Session | psycopg.Connection[Any],
    external_id: str,
    types: Collection[str] | None,
    history: int,
    excluded: Sequence[str] = (),
    pending: int = 0,
    cf_tag: str | None = None,
) -> UserRead | None:
    """In ONE round trip: the user, every item they interacted with (of ``types``; all when None) most recent
    first, their ``history`` most recent interactions (any type), the internal ids of ``excluded`` and up to
    ``pending`` ids of items with pending vector work. With ``cf_tag``, the stored cf vector instead of the
    recent interactions when it is usable (:data:`USER_WITH_HISTORY`). None: no such user."""
    params = {
        "external_id": external_id,
        "types": None if types is None else list(types),
        "history": max(int(history), 0),
        "excluded": list(excluded),
        "pending": max(int(pending), 0),
        "cf_tag": cf_tag,
    }
    row = driver(session).execute(USER_WITH_HISTORY, params).fetchone()
    if row is None:
        return None
    user_id, profile, seen, ids, items, kinds, values, stamps, excluded_ids, pending_ids, fresh, *cf = row
    events = History.newest_first(ids, items, kinds, values, stamps) if ids else History([], [], [], [])
    user = UserRow(user_id, external_id, profile)
    folded = stored_vector(*cf) if fresh else None
    return UserRead(
        user, list(dict.fromkeys(seen)), events, list(excluded_ids), list(pending_ids), bool(fresh), folded
    )


def stored_vector(indices: list[int] | None, values: list[float] | None) -> AnyVector | None:
    """A stored cf vector as the fold-in gives it: sparse (``indices`` given) or dense float32 values."""
    if values is None:
        return None
    if indices is not None:
        return Sparse(indices, values)
    return np.asarray(values, dtype=np.float32)


def recent_histories(session: Session, user_ids: Sequence[int], history: int) -> dict[int, History]:
    """The ``history`` most recent events of each of ``user_ids`` that has some, as :func:`user_request`
    reads them (:data:`USER_EVENTS`), in the session's transaction."""
    if not user_ids:
        return {}
    params = {"ids": [int(i) for i in user_ids], "history": max(int(history), 0)}
    rows = driver(session).execute(USER_EVENTS, params).fetchall()
    return {int(uid): History.newest_first(*cols) for uid, *cols in rows if cols[0]}


def user_with_history(
    session: Session, external_id: str, types: Collection[str] | None, history: int
) -> tuple[UserRow, list[int], History] | None:
    """The user, their seen ids and recent events (:func:`user_request` without exclusions)."""
    read = user_request(session, external_id, types, history)
    return None if read is None else (read.user, read.seen, read.events)


def recent_events(session: Session, user_id: int, limit: int) -> list[Event]:
    """The user's most recent interactions, most recent first."""
    rows = session.execute(
        select(Interaction.item_id, Interaction.type, Interaction.value)
        .where(Interaction.user_id == user_id)
        .order_by(Interaction.occurred_at.desc(), Interaction.id.desc())
        .limit(limit)
    )
    return [Event(r.item_id, r.type, r.value) for r in rows]


ITEMS_BY_IDS = (
    "SELECT id, external_id, title, attributes, active FROM items WHERE id = ANY(CAST(%(ids)s AS bigint[]))"
)
"""One statement text whatever the number of ids (an IN list would make a new prepared statement per size)."""
ITEMS_BY_IDS_NO_ATTRIBUTES = (
    "SELECT id, external_id, title, active FROM items WHERE id = ANY(CAST(%(ids)s AS bigint[]))"
)


def items_by_ids(session: Session, ids: Sequence[int], attributes: bool = True) -> dict[int, ItemRow]:
    """The rows of ``ids`` that exist; ``attributes=False`` leaves the attributes out (``{}``): most answers
    ask for no field, and decoding them is a good part of the read."""
    if not ids:
        return {}
    params = {"ids": [int(i) for i in ids]}
    if not attributes:
        rows = driver(session).execute(ITEMS_BY_IDS_NO_ATTRIBUTES, params).fetchall()
        return {i: ItemRow(i, ext, title, {}, active) for i, ext, title, active in rows}
    rows = driver(session).execute(ITEMS_BY_IDS, params).fetchall()
    return {i: ItemRow(i, ext, title, attrs, active) for i, ext, title, attrs, active in rows}


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
