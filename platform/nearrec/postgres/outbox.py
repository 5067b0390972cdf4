"""The outbox: the one place that knows how a row of vector work is written.

Every change to items or users enqueues its vector work in the same transaction as the change (the
transactional outbox), in the same statement when the change is a bulk write: the repositories put the
INSERT built here into their statement as a data-modifying CTE (:func:`with_queued`), so a batch of any size
stays one round trip. A trigger on ``sync_outbox`` (migration 0002) sends a NOTIFY at commit, so idle workers
wake up at once (see :mod:`nearrec.postgres.notify`).

A row is ``(entity, entity_id, op)``; ``available_at`` defaults to now (:func:`enqueue` can delay it) and
``attempts`` / ``failed_at`` belong to the worker (:mod:`nearrec.postgres.sync_repo`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, TypeVarTuple, cast

import numpy as np
import numpy.typing as npt
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    FromClause,
    Insert,
    Select,
    Table,
    Text,
    any_,
    bindparam,
    func,
    insert,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from nearrec.postgres.models import OutboxRow
from nearrec.postgres.staging import driver_connection, rowcount

Entity = Literal["item", "user"]
Op = Literal["upsert", "delete"]

_COLUMNS = ("entity", "entity_id", "op")
_Row = TypeVarTuple("_Row")
_OUTBOX = cast(Table, OutboxRow.__table__)


def _row(entity: Entity, entity_id: ColumnElement[Any], op: Op) -> tuple[ColumnElement[Any], ...]:
    """The values of one outbox row, in the order of ``_COLUMNS``."""
    return (literal(entity, Text), entity_id, literal(op, Text))


def insert_from(changed: FromClause, entity: Entity, op: Op) -> Insert:
    """``INSERT INTO sync_outbox ... SELECT`` one row per ``id`` that ``changed`` returns (a CTE of a
    statement ``RETURNING id``, or any selectable with an ``id`` column)."""
    return insert(_OUTBOX).from_select(_COLUMNS, select(*_row(entity, changed.c.id, op)))


def with_queued(stmt: Select[*_Row], changed: FromClause, entity: Entity, op: Op) -> Select[*_Row]:
    """``stmt`` with a data-modifying CTE ``queued`` that enqueues every id of ``changed``: the change and
    its outbox rows are one statement."""
    return stmt.add_cte(insert_from(changed, entity, op).cte(f"queued_{entity}_{op}"))


def _unnest_ids() -> Any:
    """``unnest(:ids) AS a(id)``: the ids of one call, bound as one array parameter."""
    return func.unnest(bindparam("ids", type_=ARRAY(BigInteger))).table_valued("id").render_derived(name="a")


def enqueue(
    session: Session,
    entity: Entity,
    entity_ids: Iterable[int],
    op: Op = "upsert",
    *,
    delay_seconds: float | None = None,
) -> int:
    """Add one outbox row per id (one statement); returns how many were added. With ``delay_seconds`` the
    rows become available that much later (work that must be redone later).

    Workers coalesce rows per entity, so enqueueing an id that already has pending work is harmless.
    """
    ids = [int(i) for i in entity_ids]
    if not ids:
        return 0
    source = _unnest_ids()
    values: list[ColumnElement[Any]] = list(_row(entity, source.c.id, op))
    columns = list(_COLUMNS)
    if delay_seconds is not None:
        columns.append("available_at")
        values.append(func.now() + func.make_interval(0, 0, 0, 0, 0, 0, delay_seconds))
    session.execute(insert(_OUTBOX).from_select(columns, select(*values)), {"ids": ids})
    return len(ids)


_COPY_ROWS = "COPY sync_outbox (entity, entity_id, op) FROM STDIN"


def copy_enqueue(session: Session, entity: Entity, entity_ids: npt.NDArray[np.int64]) -> int:
    """Add one upsert row per id with a COPY (bulk loads of new rows: no INSERT ... SELECT); returns how
    many."""
    if not len(entity_ids):
        return 0
    head, tail = f"{entity}\t", "\tupsert\n"
    data = head + (tail + head).join(map(str, entity_ids.tolist())) + tail
    with driver_connection(session).cursor() as cursor, cursor.copy(_COPY_ROWS) as copy:
        copy.write(data.encode())
    return len(entity_ids)


def enqueue_refresh(session: Session, entity: Entity, entity_ids: Iterable[int]) -> int:
    """Enqueue an upsert per id unless the entity already has a pending one; returns how many were added.

    One pending refresh per entity is enough: skip entities that already have an unclaimed upsert row. A row
    a worker has claimed is locked (``FOR UPDATE SKIP LOCKED`` skips it) or has ``attempts > 0``, so a new
    row is added and the newest state is never missed. The rows found are locked until commit, so no worker
    can take them with a snapshot older than this transaction.
    """
    ids = [int(i) for i in entity_ids]
    if not ids:
        return 0
    # The pending rows of all the ids in one scan, then an anti-join: not a probe per id, whose plan (a
    # per-id bitmap AND with ix_sync_outbox_pending, once the outbox was vacuumed but not analyzed) could
    # read the whole pending index for every id.
    o = _OUTBOX.alias("o")
    pending = (
        select(o.c.entity_id)
        .where(
            o.c.entity == entity,
            o.c.entity_id == any_(bindparam("ids", type_=ARRAY(BigInteger))),
            o.c.op == "upsert",
            o.c.attempts == 0,
            o.c.failed_at.is_(None),
        )
        .with_for_update(skip_locked=True)
        .cte("pending")
    )
    source = _unnest_ids()
    stmt = insert(_OUTBOX).from_select(
        _COLUMNS,
        select(*_row(entity, source.c.id, "upsert")).where(source.c.id.not_in(select(pending.c.entity_id))),
    )
    return rowcount(session.execute(stmt.execution_options(preserve_rowcount=True), {"ids": ids}))


# A load's batches skip the users whose refresh an earlier batch of the load holds pending, while no worker
# has taken a user refresh since (migration 0008). The two sides:
# - each batch of a load, in its transaction: take the advisory lock 'nearrec_user_loads' shared (held
#   until it commits), THEN read ``user_refresh_claims`` (:func:`user_refresh_mark`);
# - a worker, after claiming its rows and BEFORE reading the users: bump ``user_refresh_claims``, then wait
#   for the batches holding that lock (:func:`claiming_users`).
# So a batch that read the counter before a worker's bump commits before that worker reads, and a batch that
# read it after sees it moved and checks every user again (enqueue_refresh).
_LOAD_SHARES = text("SELECT pg_advisory_xact_lock_shared(hashtext('nearrec_user_loads'))")
_CLAIMS = text("SELECT last_value, is_called FROM user_refresh_claims")
_BUMP_CLAIMS = text("SELECT nextval('user_refresh_claims')")
# Waits for the loads' batches in flight, and holds nothing afterwards (a session lock, released at once).
_WAIT_FOR_LOADS = text(
    "WITH held AS MATERIALIZED (SELECT pg_advisory_lock(hashtext('nearrec_user_loads')))"
    " SELECT pg_advisory_unlock(hashtext('nearrec_user_loads')) FROM held"
)


def user_refresh_mark(session: Session) -> tuple[int, bool]:
    """For a load's batch: keep workers from reading claimed users until this transaction ends, and return
    the user-claim counter. While it stays the same, every user refresh an earlier batch of the load locked or
    wrote is still pending and no worker can read that user before this batch commits."""
    session.execute(_LOAD_SHARES)
    last, called = session.execute(_CLAIMS).one()
    return int(last), bool(called)


def claiming_users(session: Session) -> None:
    """For a worker that claimed user rows, before it reads those users: bump the user-claim counter (loads
    then check their users again), then wait for the load batches in flight to commit."""
    session.execute(_BUMP_CLAIMS)
    session.execute(_WAIT_FOR_LOADS)
