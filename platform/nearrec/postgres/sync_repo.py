"""SQL of the sync worker and of ``nearrec sync``: claiming outbox rows, reading entity state, statistics.

Nothing here commits: the worker batch (or the CLI command) owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT, TEXT
from sqlalchemy.orm import Session

from nearrec.postgres.models import Interaction, Item, OutboxRow, User

# --- claiming ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    id: int
    entity: str
    entity_id: int
    op: str
    attempts: int


def claim(session: Session, limit: int) -> list[Claim]:
    """Lock up to ``limit`` available rows (oldest first) that no other transaction holds."""
    stmt = (
        select(OutboxRow.id, OutboxRow.entity, OutboxRow.entity_id, OutboxRow.op, OutboxRow.attempts)
        .where(OutboxRow.failed_at.is_(None), OutboxRow.available_at <= func.now())
        .order_by(OutboxRow.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [Claim(*row) for row in session.execute(stmt)]


_HOLD = text("SELECT pg_advisory_xact_lock(hashtext('nearrec_reindex_swap'))")
_WAIT_FOR_HOLD = text("SELECT pg_advisory_xact_lock_shared(hashtext('nearrec_reindex_swap'))")


def hold_workers(session: Session) -> None:
    """Keep every worker batch from starting until this transaction ends (waits for the running ones): what
    ``nearrec reindex`` takes while it compares its new collections with Postgres, enqueues the differences
    and swaps the aliases, so no outbox row is removed by a write to the collections being replaced."""
    session.execute(_HOLD)


def wait_for_hold(session: Session) -> None:
    """The worker's side of :func:`hold_workers`: the first statement of each batch's transaction."""
    session.execute(_WAIT_FOR_HOLD)


_LOCK_ENTITIES = text(
    """
    SELECT t.entity, t.entity_id
    FROM unnest(CAST(:entities AS text[]), CAST(:ids AS bigint[])) AS t(entity, entity_id)
    WHERE pg_try_advisory_xact_lock(hashtext('nearrec_sync_' || t.entity),
                                    CAST(t.entity_id % 2147483647 AS integer))
    """
)


def lock_entities(session: Session, keys: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
    """Take a transaction-scoped advisory lock per entity without waiting; return the keys obtained.

    Two workers may claim rows of the same entity (they are different rows); only the one holding the entity
    lock processes it, so an entity is never embedded twice concurrently."""
    if not keys:
        return set()
    rows = session.execute(_LOCK_ENTITIES, {"entities": [k[0] for k in keys], "ids": [k[1] for k in keys]})
    return {(str(e), int(i)) for e, i in rows}


def claim_more(
    session: Session, entity: str, entity_ids: Sequence[int], exclude: Sequence[int]
) -> list[Claim]:
    """Lock the other outbox rows of entities this transaction already holds (pending, retrying or parked):
    the batch covers them too, so they are removed with it. Call BEFORE reading the entities' state."""
    if not entity_ids:
        return []
    stmt = (
        select(OutboxRow.id, OutboxRow.entity, OutboxRow.entity_id, OutboxRow.op, OutboxRow.attempts)
        .where(
            OutboxRow.entity == entity,
            OutboxRow.entity_id.in_(list(entity_ids)),
            OutboxRow.id.not_in(list(exclude)),
        )
        .with_for_update(skip_locked=True)
    )
    return [Claim(*row) for row in session.execute(stmt)]


def delete_rows(session: Session, ids: Sequence[int]) -> None:
    if ids:
        session.execute(delete(OutboxRow).where(OutboxRow.id.in_(list(ids))))


def defer(session: Session, ids: Sequence[int], seconds: float) -> None:
    """Make rows available again in ``seconds`` without counting an attempt (entity busy elsewhere)."""
    if ids:
        session.execute(
            update(OutboxRow)
            .where(OutboxRow.id.in_(list(ids)))
            .values(available_at=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, seconds))
        )


_FAIL = text(
    """
    UPDATE sync_outbox
    SET attempts = attempts + 1,
        last_error = :error,
        available_at = now() + make_interval(secs => least(:base * power(2, attempts), :cap)),
        failed_at = CASE WHEN attempts + 1 >= :max_attempts THEN now() END
    WHERE id = ANY(:ids)
    """
).bindparams(bindparam("ids", type_=ARRAY(BIGINT)))


def record_failure(
    session: Session, ids: Sequence[int], error: str, max_attempts: int, base_delay: float, max_delay: float
) -> None:
    """Count a failed attempt: exponential backoff (``base_delay * 2**attempts``, at most ``max_delay``);
    the row is parked (``failed_at``) once it has failed ``max_attempts`` times."""
    if ids:
        session.execute(
            _FAIL,
            {
                "ids": list(ids),
                "error": error,
                "max_attempts": max_attempts,
                "base": base_delay,
                "cap": max_delay,
            },
        )


def seconds_until_next(session: Session) -> float | None:
    """Seconds until the next unparked row becomes available (0 if one is), None when there is none."""
    value = session.execute(
        select(func.extract("epoch", func.min(OutboxRow.available_at) - func.now())).where(
            OutboxRow.failed_at.is_(None)
        )
    ).scalar_one()
    return None if value is None else max(0.0, float(value))


# --- entity state ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ItemState:
    id: int
    external_id: str
    text: str | None
    attributes: dict[str, Any]
    active: bool
    content_hash: str
    title: str | None


def load_items(session: Session, ids: Sequence[int]) -> list[ItemState]:
    stmt = select(
        Item.id, Item.external_id, Item.text, Item.attributes, Item.active, Item.content_hash, Item.title
    ).where(Item.id.in_(list(ids)))
    return [ItemState(*row) for row in session.execute(stmt)]


def iter_items(session: Session, chunk: int = 2000) -> Iterator[ItemState]:
    """Every item in id order, streamed (server-side cursor)."""
    stmt = select(
        Item.id, Item.external_id, Item.text, Item.attributes, Item.active, Item.content_hash, Item.title
    ).order_by(Item.id)
    for row in session.execute(stmt.execution_options(yield_per=chunk)):
        yield ItemState(*row)


@dataclass(frozen=True, slots=True)
class UserState:
    id: int
    external_id: str
    profile: str | None
    interactions: int
    last_interaction_id: int | None


def load_users(session: Session, ids: Sequence[int]) -> list[UserState]:
    stats = (
        select(
            Interaction.user_id.label("user_id"),
            func.count().label("n"),
            func.max(Interaction.id).label("last_id"),
        )
        .where(Interaction.user_id.in_(list(ids)))
        .group_by(Interaction.user_id)
        .subquery()
    )
    stmt = (
        select(User.id, User.external_id, User.profile, func.coalesce(stats.c.n, 0), stats.c.last_id)
        .outerjoin(stats, stats.c.user_id == User.id)
        .where(User.id.in_(list(ids)))
    )
    return [UserState(*row) for row in session.execute(stmt)]


_RECENT = text(
    """
    SELECT u.id AS user_id, r.item_id, r.type, r.value
    FROM unnest(:ids) AS u(id)
    CROSS JOIN LATERAL (
        SELECT i.item_id, i.type, i.value, i.occurred_at, i.id
        FROM interactions i
        WHERE i.user_id = u.id
        ORDER BY i.occurred_at DESC, i.id DESC
        LIMIT :k
    ) AS r
    ORDER BY u.id, r.occurred_at DESC, r.id DESC
    """
).bindparams(bindparam("ids", type_=ARRAY(BIGINT)))


def recent_interactions(
    session: Session, user_ids: Sequence[int], per_user: int
) -> dict[int, list[tuple[int, str, float | None]]]:
    """The ``per_user`` most recent interactions of each user as ``(item_id, type, value)``, newest first."""
    out: dict[int, list[tuple[int, str, float | None]]] = {}
    if not user_ids:
        return out
    for uid, item_id, kind, value in session.execute(_RECENT, {"ids": list(user_ids), "k": per_user}):
        out.setdefault(int(uid), []).append((int(item_id), str(kind), value))
    return out


_USER_STATES = text(
    """
    SELECT u.id, u.external_id, u.profile, coalesce(s.n, 0), s.last_id, coalesce(s.useful, false)
    FROM users u
    LEFT JOIN (
        SELECT i.user_id, count(*) AS n, max(i.id) AS last_id,
               bool_or(it.text IS NOT NULL AND btrim(it.text) <> '' AND i.type <> ALL(:ignored)) AS useful
        FROM interactions i JOIN items it ON it.id = i.item_id
        GROUP BY i.user_id
    ) s ON s.user_id = u.id
    ORDER BY u.id
    """
).bindparams(bindparam("ignored", type_=ARRAY(TEXT)))


def iter_user_states(session: Session, ignored_types: Sequence[str]) -> Iterator[tuple[UserState, bool]]:
    """Every user with its interaction statistics, and whether its history can give a vector (an
    interaction of a type not in ``ignored_types`` with an item that has text)."""
    result = session.execute(_USER_STATES.execution_options(yield_per=2000), {"ignored": list(ignored_types)})
    for uid, ext, profile, n, last_id, useful in result:
        yield UserState(int(uid), str(ext), profile, int(n), last_id), bool(useful)


# --- statistics ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxStats:
    pending: int
    available: int
    retrying: int
    parked: int
    oldest_pending: datetime | None
    now: datetime


def outbox_stats(session: Session) -> OutboxStats:
    pending = OutboxRow.failed_at.is_(None)
    row = session.execute(
        select(
            func.count().filter(pending),
            func.count().filter(pending, OutboxRow.available_at <= func.now()),
            func.count().filter(pending, OutboxRow.attempts > 0),
            func.count().filter(OutboxRow.failed_at.is_not(None)),
            func.min(OutboxRow.created_at).filter(pending),
            func.now(),
        )
    ).one()
    return OutboxStats(*row)


@dataclass(frozen=True, slots=True)
class FailedRow:
    id: int
    entity: str
    entity_id: int
    attempts: int
    last_error: str | None
    failed_at: datetime | None


def failed_rows(session: Session, limit: int = 20) -> list[FailedRow]:
    """Parked rows (newest first), then rows that are being retried."""
    stmt = (
        select(
            OutboxRow.id,
            OutboxRow.entity,
            OutboxRow.entity_id,
            OutboxRow.attempts,
            OutboxRow.last_error,
            OutboxRow.failed_at,
        )
        .where(OutboxRow.attempts > 0)
        .order_by(OutboxRow.failed_at.desc().nulls_last(), OutboxRow.id.desc())
        .limit(limit)
    )
    return [FailedRow(*row) for row in session.execute(stmt)]


def retry_parked(session: Session) -> int:
    """Make every parked row available again with a fresh attempt count; returns how many."""
    result = session.execute(
        update(OutboxRow)
        .where(OutboxRow.failed_at.is_not(None))
        .values(failed_at=None, attempts=0, available_at=func.now())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class TableCounts:
    items: int
    active_items: int
    items_with_text: int
    users: int
    interactions: int


def table_counts(session: Session) -> TableCounts:
    has_text = Item.text.is_not(None) & (func.btrim(Item.text) != "")
    items = session.execute(
        select(func.count(), func.count().filter(Item.active), func.count().filter(has_text)).select_from(
            Item
        )
    ).one()
    users = session.execute(select(func.count()).select_from(User)).scalar_one()
    interactions = session.execute(select(func.count()).select_from(Interaction)).scalar_one()
    return TableCounts(int(items[0]), int(items[1]), int(items[2]), int(users), int(interactions))


def advisory_xact_lock(session: Session, name: str) -> None:
    """Wait for a transaction-scoped advisory lock named ``name`` (serialises collection creation)."""
    session.execute(select(func.pg_advisory_xact_lock(func.hashtext(name))))


def pending_entities(session: Session, entity: str, ids: Sequence[int]) -> set[int]:
    """Those of ``ids`` that still have unparked outbox rows."""
    if not ids:
        return set()
    stmt = (
        select(OutboxRow.entity_id)
        .where(OutboxRow.entity == entity, OutboxRow.entity_id.in_(list(ids)), OutboxRow.failed_at.is_(None))
        .distinct()
    )
    return {int(i) for i in session.scalars(stmt)}
