"""Item repository: staged bulk upsert, prune, delete. Every write enqueues its vector work in the same
statement (see :mod:`nearrec.postgres.outbox`); nothing here commits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
import psycopg
from sqlalchemy import bindparam, column, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.types import BigInteger, Boolean, Text

from nearrec.postgres import history, outbox, staging
from nearrec.postgres.staging import UpsertCounts

# (line, external_id, title, text, attributes as JSON text, content_hash)
StagedItem = tuple[int, str, str | None, str, str, str]

_CREATE_STAGE = text(
    "CREATE TEMPORARY TABLE IF NOT EXISTS nearrec_stage_items ("
    " line integer NOT NULL, external_id text NOT NULL, title text, text text NOT NULL,"
    " attributes jsonb NOT NULL, content_hash text NOT NULL) ON COMMIT DELETE ROWS"
)
_TRUNCATE_STAGE = text("TRUNCATE nearrec_stage_items")
_COPY_STAGE = "COPY nearrec_stage_items (line, external_id, title, text, attributes, content_hash) FROM STDIN"
_COPY_STAGE_CSV = "COPY nearrec_stage_items (line, external_id, title, text, attributes, content_hash) FROM STDIN (FORMAT csv)"

# The last row of an id wins within a batch. Unchanged rows are neither written nor returned; each inserted
# or changed row gets exactly one outbox row. (Used when the fast path below meets a concurrent load.)
_UPSERTED = (
    text(
        """
        INSERT INTO items AS i (external_id, title, text, attributes, active, content_hash)
        SELECT d.external_id, d.title, d.text, d.attributes, true, d.content_hash
        FROM (
            SELECT DISTINCT ON (s.external_id) s.*
            FROM nearrec_stage_items AS s ORDER BY s.external_id, s.line DESC
        ) AS d
        ORDER BY d.line
        ON CONFLICT (external_id) DO UPDATE
        SET title = excluded.title, text = excluded.text, attributes = excluded.attributes,
            active = true, content_hash = excluded.content_hash, updated_at = now()
        WHERE (i.title, i.text, i.attributes, i.active)
              IS DISTINCT FROM (excluded.title, excluded.text, excluded.attributes, excluded.active)
        RETURNING i.id, (i.xmax = 0) AS inserted
        """
    )
    .columns(column("id", BigInteger), column("inserted", Boolean))
    .cte("upserted")
)
_UPSERT = outbox.with_queued(
    select(func.count().filter(_UPSERTED.c.inserted), func.count().filter(~_UPSERTED.c.inserted)),
    _UPSERTED,
    "item",
    "upsert",
)

# The fast path writes a batch in two statements: the UPDATE of the stored items that changed, then a plain
# INSERT of the items not stored yet (one probe of the external id's index per row), cheaper than the
# speculative insertion of ON CONFLICT; the last row of an id in the batch wins, as there. A concurrent load
# can insert one of these ids between the probe and the insert: the unique index then raises, and the
# batch's inserts are redone (from a savepoint) by _UPSERT.
_CHANGED = (
    text(
        """
        UPDATE items AS i
        SET title = d.title, text = d.text, attributes = d.attributes, active = true,
            content_hash = d.content_hash, updated_at = now()
        FROM (
            SELECT DISTINCT ON (s.external_id) s.*
            FROM nearrec_stage_items AS s ORDER BY s.external_id, s.line DESC
        ) AS d
        WHERE i.external_id = d.external_id
          AND (i.title, i.text, i.attributes, i.active) IS DISTINCT FROM (d.title, d.text, d.attributes, true)
        RETURNING i.id
        """
    )
    .columns(column("id", BigInteger))
    .cte("changed")
)
_UPDATE = outbox.with_queued(select(func.count()).select_from(_CHANGED), _CHANGED, "item", "upsert")
_NEW = (
    text(
        """
        INSERT INTO items (external_id, title, text, attributes, active, content_hash)
        SELECT d.external_id, d.title, d.text, d.attributes, true, d.content_hash
        FROM (
            SELECT DISTINCT ON (s.external_id) s.*
            FROM nearrec_stage_items AS s ORDER BY s.external_id, s.line DESC
        ) AS d
        WHERE (SELECT 1 FROM items AS x WHERE x.external_id = d.external_id LIMIT 1) IS NULL
        ORDER BY d.line
        RETURNING id
        """
    )
    .columns(column("id", BigInteger))
    .cte("new")
)
_INSERT = outbox.with_queued(select(func.count()).select_from(_NEW), _NEW, "item", "upsert")

_CREATE_SEEN = text(
    "CREATE TEMPORARY TABLE IF NOT EXISTS nearrec_seen_items (external_id text PRIMARY KEY)"
    " ON COMMIT PRESERVE ROWS"
)
_TRUNCATE_SEEN = text("TRUNCATE nearrec_seen_items")
_SEEN_FROM_STAGE = text(
    "INSERT INTO nearrec_seen_items (external_id) SELECT DISTINCT external_id FROM nearrec_stage_items"
    " ON CONFLICT DO NOTHING"
)
_SEEN_IDS = text(
    "INSERT INTO nearrec_seen_items (external_id) SELECT DISTINCT unnest(:ids) ON CONFLICT DO NOTHING"
).bindparams(bindparam("ids", type_=ARRAY(Text)))
_PRUNED = (
    text(
        "UPDATE items SET active = false, updated_at = now() WHERE active AND NOT EXISTS"
        " (SELECT 1 FROM nearrec_seen_items AS s WHERE s.external_id = items.external_id) RETURNING id"
    )
    .columns(column("id", BigInteger))
    .cte("pruned")
)
_PRUNE = outbox.with_queued(select(func.count()).select_from(_PRUNED), _PRUNED, "item", "upsert")

_DELETED = (
    text("DELETE FROM items WHERE external_id = ANY(:ids) RETURNING id, external_id")
    .bindparams(bindparam("ids", type_=ARRAY(Text)))
    .columns(column("id", BigInteger), column("external_id", Text))
    .cte("deleted")
)
_DELETE = outbox.with_queued(select(_DELETED.c.id, _DELETED.c.external_id), _DELETED, "item", "delete")


def upsert(session: Session, rows: Iterable[StagedItem] | bytes, *, track_seen: bool = False) -> UpsertCounts:
    """Insert new items, update changed ones (reactivating them), leave identical ones untouched. ``rows``:
    staged tuples, or the same columns as CSV (built in C by the fast path of files).

    With ``track_seen`` the ids also go into the connection's seen set, for :func:`prune_unseen`.
    """
    staging.prepare(session, _CREATE_STAGE, _TRUNCATE_STAGE)
    if isinstance(rows, bytes):
        if not rows:
            return UpsertCounts(0, 0)
        staging.copy_bytes(session, _COPY_STAGE_CSV, rows)
    elif staging.copy_rows(session, _COPY_STAGE, rows) == 0:
        return UpsertCounts(0, 0)
    updated = int(session.execute(_UPDATE).scalar_one())
    try:
        with session.begin_nested():
            inserted = int(session.execute(_INSERT).scalar_one())
    except IntegrityError:  # a concurrent load inserted one of the ids: see _NEW
        inserted, also_updated = session.execute(_UPSERT).one()
        updated += int(also_updated)
    if track_seen:
        session.execute(_SEEN_FROM_STAGE)
    return UpsertCounts(int(inserted), int(updated))


# New items straight into the table, with the ids reserved for them (the fast path of files:
# :mod:`nearrec.ingest.item_write`), and their outbox rows COPYed too.
_COPY_NEW = "COPY items (id, external_id, title, text, attributes, content_hash) FROM STDIN (FORMAT csv)"
DUPLICATE = psycopg.errors.UniqueViolation  # a COPY met an item stored meanwhile (nothing of it is kept)


def copy_new(session: Session, data: bytes, ids: npt.NDArray[np.int64]) -> int:
    """COPY new items (CSV: id, external_id, title, text, attributes, content_hash; active) whose ``ids``
    were reserved (:func:`nearrec.postgres.ids.ids_or_new`), and enqueue each; returns how many. Raises
    :data:`DUPLICATE` when one of them is stored (by another load meanwhile)."""
    staging.copy_bytes(session, _COPY_NEW, data)
    return outbox.copy_enqueue(session, "item", ids)


def reset_seen(session: Session) -> None:
    """Start a new seen set (per connection: the caller keeps one connection until :func:`prune_unseen`)."""
    staging.prepare(session, _CREATE_SEEN, _TRUNCATE_SEEN)


def add_seen(session: Session, external_ids: Sequence[str]) -> None:
    """Mark ids as present in the catalog file without writing them (e.g. rows rejected for a bad field)."""
    if external_ids:
        session.execute(_SEEN_IDS, {"ids": list(external_ids)})


def prune_unseen(session: Session) -> int:
    """Deactivate every active item missing from the seen set and enqueue it; returns how many."""
    return int(session.execute(_PRUNE).scalar_one())


def delete(session: Session, external_ids: Sequence[str]) -> tuple[list[str], int]:
    """Delete items and their interactions, enqueue their vector deletion and a refresh of every user
    whose history loses an interaction. Returns the external ids found and the users enqueued."""
    ids = list(dict.fromkeys(external_ids))
    history.lock_for_delete(session)  # explicit cascade: see nearrec.postgres.history
    deleted = session.execute(_DELETE, {"ids": ids}).all()
    users = history.delete_of_items(session, [int(pk) for pk, _ in deleted])
    return [str(e) for _, e in deleted], outbox.enqueue_refresh(session, "user", users)
