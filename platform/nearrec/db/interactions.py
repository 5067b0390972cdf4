"""Interaction repository: staged bulk insert that resolves external ids, creates unknown users (and, on
request, placeholder items), ignores repeated event ids and enqueues one refresh per affected user.
Nothing here commits."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from nearrec.db import staging
from nearrec.db.users import enqueue_user_refresh

# (line, user external id, item external id, type, value, unix seconds or None, event_id)
StagedInteraction = tuple[int, str, str, str, float | None, float | None, str | None]

_CREATE_STAGE = text(
    "CREATE TEMPORARY TABLE IF NOT EXISTS nearrec_stage_interactions ("
    " line integer NOT NULL, user_id text NOT NULL, item_id text NOT NULL, type text NOT NULL,"
    " value double precision, ts double precision, event_id text) ON COMMIT DELETE ROWS"
)
_TRUNCATE_STAGE = text("TRUNCATE nearrec_stage_interactions")
_COPY_STAGE = "COPY nearrec_stage_interactions (line, user_id, item_id, type, value, ts, event_id) FROM STDIN"

# External ids are resolved with scalar subqueries: one unique-index probe per row, so the cost follows the
# batch size and not the size of the catalog (a hash join would scan every item for every batch).
_REMOVE_UNKNOWN_ITEMS = text(
    """
    DELETE FROM nearrec_stage_interactions AS s
    WHERE (SELECT i.id FROM items AS i WHERE i.external_id = s.item_id) IS NULL
    RETURNING s.line, s.item_id
    """
)
# Placeholders are inactive with an empty text: nothing to embed until a catalog file describes them.
_CREATE_MISSING_ITEMS = text(
    """
    INSERT INTO items (external_id, text, active, content_hash)
    SELECT DISTINCT s.item_id, '', false, :empty_hash
    FROM nearrec_stage_interactions AS s
    WHERE (SELECT i.id FROM items AS i WHERE i.external_id = s.item_id) IS NULL
    ON CONFLICT (external_id) DO NOTHING
    """
)
_CREATE_MISSING_USERS = text(
    """
    INSERT INTO users (external_id)
    SELECT DISTINCT s.user_id FROM nearrec_stage_interactions AS s
    WHERE (SELECT u.id FROM users AS u WHERE u.external_id = s.user_id) IS NULL
    ON CONFLICT (external_id) DO NOTHING
    """
)
# Rows go in file order, so of two rows with the same event id the first one is kept.
_INSERT = text(
    """
    WITH resolved AS MATERIALIZED (
        SELECT s.line, s.type, s.value, s.ts, s.event_id,
               (SELECT u.id FROM users AS u WHERE u.external_id = s.user_id) AS user_pk,
               (SELECT i.id FROM items AS i WHERE i.external_id = s.item_id) AS item_pk
        FROM nearrec_stage_interactions AS s
    ), inserted AS (
        INSERT INTO interactions (user_id, item_id, type, value, occurred_at, event_id)
        SELECT r.user_pk, r.item_pk, r.type, r.value, coalesce(to_timestamp(r.ts), now()), r.event_id
        FROM resolved AS r
        WHERE r.user_pk IS NOT NULL AND r.item_pk IS NOT NULL
        ORDER BY r.line
        ON CONFLICT (event_id) DO NOTHING
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
    rows: Iterable[StagedInteraction],
    *,
    create_missing_items: bool,
    empty_text_hash: str,
) -> InsertCounts:
    """Write a batch of interactions. Rows naming an unknown item are left out and returned (unless
    ``create_missing_items``); unknown users are created; a repeated event id is ignored."""
    staging.prepare(session, _CREATE_STAGE, _TRUNCATE_STAGE)
    if staging.copy_rows(session, _COPY_STAGE, rows) == 0:
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
    per_user = session.execute(_INSERT).all()
    users = [int(user_id) for user_id, _ in per_user]
    inserted = sum(int(n) for _, n in per_user)
    return InsertCounts(inserted, users_created, items_created, enqueue_user_refresh(session, users), unknown)
