"""Interaction repository: staged bulk insert that resolves external ids, creates unknown users (and, on
request, placeholder items), ignores repeated events and enqueues one refresh per affected user.
Nothing here commits.

Idempotency: a row with an event id is the event of that id (a partial unique index on ``event_id``); a row
without one gets ``event_key``, a uuid (md5) of its content (user, item, type, the value's bits, the timestamp
in microseconds, and the occurrence number of an untimed row: see :mod:`nearrec.ingest.events`), unique per
user (a partial unique index on ``(user_id, event_key)``). A repeat is a no-op.

This module writes batches through a staging table (the row path: JSON Lines, HTTP, the Python API, and the
fallback of the columnar path); the columnar path of files COPYs straight into ``interactions``
(:mod:`nearrec.postgres.interaction_copy`).

No foreign keys: instead, every insert first takes ``ROW EXCLUSIVE`` on ``interactions`` and the delete paths
of users and items take ``SHARE`` on it before deleting (:mod:`nearrec.postgres.history`). So a delete waits for every
insert in flight to commit and then removes the history it wrote, and an insert that starts after a delete
resolves ids only once the delete has committed: no interaction can point to a missing user or item.
A row is written only if its user and item exist or are created in the same statement sequence, and a row
that is rejected or a repeat creates nothing (no user, no item).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nearrec.postgres import history, outbox, staging

# (line, user external id, item external id, type, value, unix seconds or None, event_id, occurrence)
StagedInteraction = tuple[int, str, str, str, float | None, float | None, str | None, int | None]

# The key is a generated column, computed while COPY fills the stage, from exact representations (the
# value's 8 bytes, whole microseconds), so it depends on no setting.
_CREATE_STAGE = text(
    """
    CREATE TEMPORARY TABLE IF NOT EXISTS nearrec_stage_interactions (
        line bigint NOT NULL, user_id text NOT NULL, item_id text NOT NULL, type text NOT NULL,
        value double precision, ts double precision, event_id text, occurrence integer,
        event_key uuid GENERATED ALWAYS AS (CASE WHEN event_id IS NULL THEN md5(
            'c' || chr(31) || user_id || chr(31) || item_id || chr(31) || type || chr(31)
            || coalesce(encode(float8send(value), 'hex'), '') || chr(31)
            || coalesce(round(ts * 1000000)::bigint::text, '') || chr(31)
            || coalesce(occurrence::text, ''))::uuid END) STORED
    ) ON COMMIT DELETE ROWS
    """
)
_TRUNCATE_STAGE = text("TRUNCATE nearrec_stage_interactions")
COPY_STAGE = "COPY nearrec_stage_interactions (line, user_id, item_id, type, value, ts, event_id, occurrence) FROM STDIN"
COPY_STAGE_CSV = (
    "COPY nearrec_stage_interactions (line, user_id, item_id, type, value, ts, event_id, occurrence)"
    " FROM STDIN (FORMAT csv)"
)
# A batch is sorted twice (dedup by key, then (user, time)): enough memory to do it without temp files,
# and no JIT (its compile time exceeds what it saves on a batch).
_BATCH_SETTINGS = (text("SET LOCAL work_mem = '64MB'"), text("SET LOCAL jit = off"))
_REMOVE_UNKNOWN_ITEMS = text(
    """
    DELETE FROM nearrec_stage_interactions AS s
    WHERE NOT EXISTS (SELECT 1 FROM items AS i WHERE i.external_id = s.item_id)
    RETURNING s.line, s.item_id
    """
)
# Placeholders are inactive with an empty text: nothing to embed until a catalog file describes them.
_CREATE_MISSING_ITEMS = text(
    """
    INSERT INTO items (external_id, text, active, content_hash)
    SELECT DISTINCT s.item_id, '', false, :empty_hash FROM nearrec_stage_interactions AS s
    WHERE NOT EXISTS (SELECT 1 FROM items AS i WHERE i.external_id = s.item_id)
    ON CONFLICT (external_id) DO NOTHING
    """
)
# A user is created only for a row that will be written: a repeat of a stored event creates nothing. An unknown
# user has no stored content-keyed row (its key holds the user), so only event ids are checked: a subplan, so
# it runs (one index probe) only for the rows of unknown users.
_CREATE_MISSING_USERS = text(
    """
    WITH fresh AS MATERIALIZED (
        SELECT s.user_id, s.event_id FROM nearrec_stage_interactions AS s
        WHERE NOT EXISTS (SELECT 1 FROM users AS u WHERE u.external_id = s.user_id)
    )
    INSERT INTO users (external_id)
    SELECT DISTINCT f.user_id FROM fresh AS f
    WHERE f.event_id IS NULL
       OR (SELECT 1 FROM interactions AS i WHERE i.event_id = f.event_id LIMIT 1) IS NULL
    ON CONFLICT (external_id) DO NOTHING
    """
)
# Of two rows of the same event (same event id, or same content key), the first in the file is kept. Rows go in
# (user, time) order: each user's rows land next to each other in the (user_id, occurred_at) index.
#
# The fast statement: ids are resolved first (materialized, so the planner joins the whole batch at once
# rather than row by row), repeats of stored events are left out by one probe of the key's index per row (a
# subplan, so never a scan of the whole table), repeats within the batch by DISTINCT ON, and the rest is a
# plain INSERT, cheaper than ON CONFLICT's speculative insertion.
# A concurrent load can still store one of these keys between the probe and the insert: the unique index
# then raises, and the batch is written again (from a savepoint) by the ON CONFLICT statement below.
_INSERT_NEW = text(
    """
    WITH resolved AS MATERIALIZED (
        SELECT u.id AS user_id, i.id AS item_id, s.type, s.value, s.ts, s.line, s.event_id, s.event_key
        FROM nearrec_stage_interactions AS s
        JOIN users AS u ON u.external_id = s.user_id
        JOIN items AS i ON i.external_id = s.item_id
    ),
    inserted AS (
        INSERT INTO interactions (user_id, item_id, type, value, occurred_at, event_id, event_key)
        SELECT d.user_id, d.item_id, d.type, d.value, coalesce(to_timestamp(d.ts), now()), d.event_id,
               d.event_key
        FROM (
            SELECT DISTINCT ON (r.event_id, r.event_key) r.* FROM resolved AS r
            WHERE CASE WHEN r.event_id IS NOT NULL
                       THEN (SELECT 1 FROM interactions AS x WHERE x.event_id = r.event_id LIMIT 1)
                       ELSE (SELECT 1 FROM interactions AS x WHERE x.event_id IS NULL
                             AND x.user_id = r.user_id AND x.event_key = r.event_key LIMIT 1) END IS NULL
            ORDER BY r.event_id, r.event_key, r.line
        ) AS d
        ORDER BY d.user_id, d.ts, d.line
        RETURNING user_id
    )
    SELECT user_id, count(*) FROM inserted GROUP BY user_id
    """
)
_INSERT = text(
    """
    WITH inserted AS (
        INSERT INTO interactions (user_id, item_id, type, value, occurred_at, event_id, event_key)
        SELECT u.id, i.id, s.type, s.value, coalesce(to_timestamp(s.ts), now()), s.event_id, s.event_key
        FROM nearrec_stage_interactions AS s
        JOIN users AS u ON u.external_id = s.user_id
        JOIN items AS i ON i.external_id = s.item_id
        ORDER BY u.id, s.ts, s.line
        ON CONFLICT DO NOTHING
        RETURNING user_id
    )
    SELECT user_id, count(*) FROM inserted GROUP BY user_id
    """
)


@dataclass(frozen=True)
class InsertCounts:
    inserted: int
    users_created: int
    items_created: int
    users_enqueued: int
    unknown_items: list[tuple[int, str]]  # (line, item external id), rows not written


def insert(
    session: Session,
    rows: Iterable[StagedInteraction] | bytes,
    *,
    create_missing_items: bool,
    empty_text_hash: str,
) -> InsertCounts:
    """Write a batch of interactions (rows, or the same columns as CSV bytes). Rows naming an unknown item
    are left out and returned (unless ``create_missing_items``); unknown users are created; a repeated event
    (same key) is ignored."""
    session.execute(history.LOCK_FOR_INSERT)
    for setting in _BATCH_SETTINGS:
        session.execute(setting)
    staging.prepare(session, _CREATE_STAGE, _TRUNCATE_STAGE)
    if isinstance(rows, bytes):
        staging.copy_bytes(session, COPY_STAGE_CSV, rows)
    elif staging.copy_rows(session, COPY_STAGE, rows) == 0:
        return InsertCounts(0, 0, 0, 0, [])
    unknown: list[tuple[int, str]] = []
    items_created = 0
    if create_missing_items:
        items_created = staging.rowcount(
            session.execute(_CREATE_MISSING_ITEMS, {"empty_hash": empty_text_hash})
        )
    else:
        unknown = sorted((int(line), str(item)) for line, item in session.execute(_REMOVE_UNKNOWN_ITEMS))
    users_created = staging.rowcount(session.execute(_CREATE_MISSING_USERS))
    per_user = _insert_staged(session)
    users = [user_id for user_id, _ in per_user]
    inserted = sum(n for _, n in per_user)
    return InsertCounts(
        inserted, users_created, items_created, outbox.enqueue_refresh(session, "user", users), unknown
    )


def _insert_staged(session: Session) -> list[tuple[int, int]]:
    """Insert the staged rows that are new; returns (user id, rows inserted) per user."""
    try:
        with session.begin_nested():
            rows = session.execute(_INSERT_NEW).all()
    except IntegrityError:  # a concurrent load stored one of the keys after the probe: see _INSERT_NEW
        rows = session.execute(_INSERT).all()
    return [(int(user_id), int(n)) for user_id, n in rows]
