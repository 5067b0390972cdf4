"""User repository: staged bulk upsert, creation of unknown users, deletion, and the coalesced
"refresh this user's vector" enqueue. Nothing here commits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.types import BigInteger, Text

from nearrec.postgres import staging
from nearrec.postgres.staging import UpsertCounts

# (line, external_id, profile, attributes as JSON text)
StagedUser = tuple[int, str, str | None, str]

_CREATE_STAGE = text(
    "CREATE TEMPORARY TABLE IF NOT EXISTS nearrec_stage_users ("
    " line integer NOT NULL, external_id text NOT NULL, profile text, attributes jsonb NOT NULL)"
    " ON COMMIT DELETE ROWS"
)
_TRUNCATE_STAGE = text("TRUNCATE nearrec_stage_users")
_COPY_STAGE = "COPY nearrec_stage_users (line, external_id, profile, attributes) FROM STDIN"

_UPSERT = text(
    """
    WITH upserted AS (
        INSERT INTO users AS u (external_id, profile, attributes)
        SELECT d.external_id, d.profile, d.attributes
        FROM (
            SELECT DISTINCT ON (s.external_id) s.*
            FROM nearrec_stage_users AS s ORDER BY s.external_id, s.line DESC
        ) AS d
        ORDER BY d.line
        ON CONFLICT (external_id) DO UPDATE
        SET profile = excluded.profile, attributes = excluded.attributes, updated_at = now()
        WHERE (u.profile, u.attributes) IS DISTINCT FROM (excluded.profile, excluded.attributes)
        RETURNING u.id, (u.xmax = 0) AS inserted
    ), queued AS (
        INSERT INTO sync_outbox (entity, entity_id, op) SELECT 'user', id, 'upsert' FROM upserted
    )
    SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM upserted
    """
)

# One pending refresh per user is enough: skip users that already have an unclaimed upsert row. A row a
# worker has claimed is locked (FOR UPDATE SKIP LOCKED skips it) or has attempts > 0, so a new row is added
# and the new history is never missed. The rows found are locked until commit, so no worker can take them
# with a snapshot older than this transaction.
_ENQUEUE_REFRESH = text(
    """
    INSERT INTO sync_outbox (entity, entity_id, op)
    SELECT 'user', a.id, 'upsert' FROM unnest(:ids) AS a(id)
    WHERE NOT EXISTS (
        SELECT 1 FROM sync_outbox AS o
        WHERE o.entity = 'user' AND o.entity_id = a.id AND o.op = 'upsert'
          AND o.attempts = 0 AND o.failed_at IS NULL
        FOR UPDATE SKIP LOCKED
    )
    """
).bindparams(bindparam("ids", type_=ARRAY(BigInteger)))

_DELETE = text(
    """
    WITH deleted AS (
        DELETE FROM users WHERE external_id = ANY(:ids) RETURNING id, external_id
    ), queued AS (
        INSERT INTO sync_outbox (entity, entity_id, op) SELECT 'user', id, 'delete' FROM deleted
    )
    SELECT external_id FROM deleted
    """
).bindparams(bindparam("ids", type_=ARRAY(Text)))


def upsert(session: Session, rows: Iterable[StagedUser]) -> UpsertCounts:
    """Insert new users, update changed profiles/attributes, leave identical ones untouched; each inserted
    or changed user is enqueued once."""
    staging.prepare(session, _CREATE_STAGE, _TRUNCATE_STAGE)
    if staging.copy_rows(session, _COPY_STAGE, rows) == 0:
        return UpsertCounts(0, 0)
    inserted, updated = session.execute(_UPSERT).one()
    return UpsertCounts(int(inserted), int(updated))


def enqueue_user_refresh(session: Session, user_ids: Sequence[int]) -> int:
    """Enqueue a vector refresh for users whose history changed, coalesced with pending work."""
    if not user_ids:
        return 0
    return staging.rowcount(session.execute(_ENQUEUE_REFRESH, {"ids": list(user_ids)}))


def delete(session: Session, external_ids: Iterable[str]) -> list[str]:
    """Delete users (their interactions cascade) and enqueue the deletion of their vectors; returns the
    external ids found."""
    ids = list(dict.fromkeys(external_ids))
    return [str(e) for e in session.execute(_DELETE, {"ids": ids}).scalars()]
