"""Interaction repository: staged bulk insert that resolves external ids, creates unknown users (and, on
request, placeholder items), ignores repeated event ids and enqueues one refresh per affected user.
Nothing here commits."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from nearrec.postgres import outbox, staging

# (line, user external id, item external id, type, value, unix seconds or None, event_id)
StagedInteraction = tuple[int, str, str, str, float | None, float | None, str | None]

_CREATE_STAGE = text(
    "CREATE TEMPORARY TABLE IF NOT EXISTS nearrec_stage_interactions ("
    " line integer NOT NULL, user_id text NOT NULL, item_id text NOT NULL, type text NOT NULL,"
    " value double precision, ts double precision, event_id text, user_pk bigint, item_pk bigint)"
    " ON COMMIT DELETE ROWS"
)
_TRUNCATE_STAGE = text("TRUNCATE nearrec_stage_interactions")
_COPY_STAGE = "COPY nearrec_stage_interactions (line, user_id, item_id, type, value, ts, event_id) FROM STDIN"

# External ids are resolved once, with scalar subqueries: one unique-index probe per row and id, so the
# cost follows the batch size and not the size of the catalog (a hash join would read every item for
# every batch).
_RESOLVE = text(
    """
    UPDATE nearrec_stage_interactions AS s
    SET user_pk = (SELECT u.id FROM users AS u WHERE u.external_id = s.user_id),
        item_pk = (SELECT i.id FROM items AS i WHERE i.external_id = s.item_id)
    """
)
_REMOVE_UNKNOWN_ITEMS = text(
    "DELETE FROM nearrec_stage_interactions WHERE item_pk IS NULL RETURNING line, item_id"
)
# Placeholders are inactive with an empty text: nothing to embed until a catalog file describes them.
_CREATE_MISSING_ITEMS = text(
    """
    INSERT INTO items (external_id, text, active, content_hash)
    SELECT DISTINCT item_id, '', false, :empty_hash FROM nearrec_stage_interactions WHERE item_pk IS NULL
    ON CONFLICT (external_id) DO NOTHING
    """
)
_RESOLVE_NEW_ITEMS = text(
    """
    UPDATE nearrec_stage_interactions AS s
    SET item_pk = (SELECT i.id FROM items AS i WHERE i.external_id = s.item_id)
    WHERE s.item_pk IS NULL
    """
)
_CREATE_MISSING_USERS = text(
    """
    INSERT INTO users (external_id)
    SELECT DISTINCT user_id FROM nearrec_stage_interactions WHERE user_pk IS NULL
    ON CONFLICT (external_id) DO NOTHING
    """
)
_RESOLVE_NEW_USERS = text(
    """
    UPDATE nearrec_stage_interactions AS s
    SET user_pk = (SELECT u.id FROM users AS u WHERE u.external_id = s.user_id)
    WHERE s.user_pk IS NULL
    """
)
# Rows go in file order, so of two rows with the same event id the first one is kept.
_INSERT = text(
    """
    WITH inserted AS (
        INSERT INTO interactions (user_id, item_id, type, value, occurred_at, event_id)
        SELECT user_pk, item_pk, type, value, coalesce(to_timestamp(ts), now()), event_id
        FROM nearrec_stage_interactions
        ORDER BY line
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
    session.execute(_RESOLVE)
    unknown: list[tuple[int, str]] = []
    items_created = 0
    if create_missing_items:
        items_created = staging.rowcount(
            session.execute(_CREATE_MISSING_ITEMS, {"empty_hash": empty_text_hash})
        )
        session.execute(_RESOLVE_NEW_ITEMS)  # also finds items another session created meanwhile
    else:
        unknown = sorted((int(line), str(item)) for line, item in session.execute(_REMOVE_UNKNOWN_ITEMS))
    users_created = staging.rowcount(session.execute(_CREATE_MISSING_USERS))
    session.execute(_RESOLVE_NEW_USERS)
    per_user = session.execute(_INSERT).all()
    users = [int(user_id) for user_id, _ in per_user]
    inserted = sum(int(n) for _, n in per_user)
    return InsertCounts(
        inserted, users_created, items_created, outbox.enqueue_refresh(session, "user", users), unknown
    )
