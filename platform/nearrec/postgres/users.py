"""User repository: staged bulk upsert and deletion. Every write enqueues its vector work in the same
statement (see :mod:`nearrec.postgres.outbox`); nothing here commits. The worker also stores each refreshed
user's cf fold-in here (:func:`store_cf`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import bindparam, column, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.types import BigInteger, Boolean, Text

from nearrec.postgres import history, outbox, staging
from nearrec.postgres.query_repo import driver
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

_UPSERTED = (
    text(
        """
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
        """
    )
    .columns(column("id", BigInteger), column("inserted", Boolean))
    .cte("upserted")
)
_UPSERT = outbox.with_queued(
    select(func.count().filter(_UPSERTED.c.inserted), func.count().filter(~_UPSERTED.c.inserted)),
    _UPSERTED,
    "user",
    "upsert",
)

_DELETED = (
    text("DELETE FROM users WHERE external_id = ANY(:ids) RETURNING id, external_id")
    .bindparams(bindparam("ids", type_=ARRAY(Text)))
    .columns(column("id", BigInteger), column("external_id", Text))
    .cte("deleted")
)
_DELETE = outbox.with_queued(select(_DELETED.c.id, _DELETED.c.external_id), _DELETED, "user", "delete")


def upsert(session: Session, rows: Iterable[StagedUser]) -> UpsertCounts:
    """Insert new users, update changed profiles/attributes, leave identical ones untouched; each inserted
    or changed user is enqueued once."""
    staging.prepare(session, _CREATE_STAGE, _TRUNCATE_STAGE)
    if staging.copy_rows(session, _COPY_STAGE, rows) == 0:
        return UpsertCounts(0, 0)
    inserted, updated = session.execute(_UPSERT).one()
    return UpsertCounts(int(inserted), int(updated))


def delete(session: Session, external_ids: Iterable[str]) -> list[str]:
    """Delete users and their interactions, and enqueue the deletion of their vectors; returns the
    external ids found."""
    ids = list(dict.fromkeys(external_ids))
    history.lock_for_delete(session)  # explicit cascade: see nearrec.postgres.history
    deleted = session.execute(_DELETE, {"ids": ids}).all()
    history.delete_of_users(session, [int(pk) for pk, _ in deleted])
    return [str(e) for _, e in deleted]


CfRow = tuple[int, str, Sequence[int] | None, Sequence[float] | None]
"""(user id, tag, sparse indices or None, values or None: the fold-in gives no vector)."""

_STORE_CF = """
    UPDATE users SET cf_tag = %(tag)s, cf_indices = CAST(%(indices)s AS bigint[]),
                     cf_vector = CAST(%(values)s AS double precision[])
    WHERE id = %(id)s AND (cf_tag, cf_indices, cf_vector) IS DISTINCT FROM
          (CAST(%(tag)s AS text), CAST(%(indices)s AS bigint[]), CAST(%(values)s AS double precision[]))
"""
_CLEAR_CF = """
    UPDATE users SET cf_tag = NULL, cf_indices = NULL, cf_vector = NULL
    WHERE id = ANY(CAST(%(ids)s AS bigint[])) AND cf_tag IS NOT NULL
"""


def store_cf(session: Session, rows: Sequence[CfRow]) -> None:
    """Store the cf fold-in of each user (one pipelined statement per user, in the session's transaction;
    a row that holds it already is not rewritten)."""
    if rows:
        params = [{"id": i, "tag": tag, "indices": idx, "values": val} for i, tag, idx, val in rows]
        with driver(session).cursor() as cursor:
            cursor.executemany(_STORE_CF, params)


def clear_cf(session: Session, user_ids: Sequence[int]) -> None:
    """No model: forget the stored fold-ins of ``user_ids`` (rows that hold none are not rewritten)."""
    if user_ids:
        driver(session).execute(_CLEAR_CF, {"ids": [int(i) for i in user_ids]})
