"""The statements of the COPY path of interactions (:mod:`nearrec.ingest.copy_write` drives them).

Rows are COPYed in binary straight into ``interactions``: no staging table, no INSERT ... SELECT. Before the
COPY, in the same transaction and after :data:`nearrec.postgres.history.LOCK_FOR_INSERT`, the writer looks
up the batch's user and item ids, creates what is missing, and (when the load has met stored events) asks
which of its events are stored. The unique indexes of ``interactions`` stay the judge: a COPY that meets a
stored event fails as a whole, and the writer redoes the batch. Nothing here commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import psycopg
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Session
from sqlalchemy.types import BigInteger, Text

from nearrec.postgres.ids import ids_of
from nearrec.postgres.staging import driver_connection

COPY = (
    "COPY interactions (user_id, item_id, occurred_at, value, type, event_id, event_key)"
    " FROM STDIN (FORMAT binary)"
)
# What makes the writer redo a batch: a stored event, or (two loads of overlapping files waiting for each
# other's rows) a deadlock, of which Postgres cancels one side.
REDO = (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected)

_NAMES = bindparam("names", type_=ARRAY(Text))
_CREATE_USERS = text(
    "INSERT INTO users (external_id) SELECT unnest(:names)"
    " ON CONFLICT (external_id) DO NOTHING RETURNING external_id, id"
).bindparams(_NAMES)
# Placeholders are inactive with an empty text: nothing to embed until a catalog file describes them.
_CREATE_ITEMS = text(
    "INSERT INTO items (external_id, text, active, content_hash) SELECT unnest(:names), '', false, :hash"
    " ON CONFLICT (external_id) DO NOTHING RETURNING external_id, id"
).bindparams(_NAMES)
_STORED_EVENT_IDS = "SELECT event_id FROM interactions WHERE event_id = ANY(%s::text[])"
_STORED_KEYS = text(
    """
    SELECT k.user_id, k.event_key FROM unnest(:users, :keys) AS k(user_id, event_key)
    WHERE EXISTS (SELECT 1 FROM interactions AS x
                  WHERE x.event_id IS NULL AND x.user_id = k.user_id AND x.event_key = k.event_key)
    """
).bindparams(bindparam("users", type_=ARRAY(BigInteger)), bindparam("keys", type_=ARRAY(UUID)))
_NOW = text("SELECT now()")


def create_users(session: Session, names: Sequence[str]) -> tuple[dict[str, int], int]:
    """Create these users; returns external id -> id of every one of them (created here or meanwhile by
    another transaction, which this waits for), and how many were created here."""
    if not names:
        return {}, 0
    created = {str(e): int(i) for e, i in session.execute(_CREATE_USERS, {"names": list(names)})}
    return created | _found(session, "users", [n for n in names if n not in created]), len(created)


def create_items(session: Session, names: Sequence[str], empty_hash: str) -> tuple[dict[str, int], int]:
    """Create inactive placeholder items; returns external id -> id of all of them, and how many were
    created here."""
    if not names:
        return {}, 0
    params = {"names": list(names), "hash": empty_hash}
    created = {str(e): int(i) for e, i in session.execute(_CREATE_ITEMS, params)}
    return created | _found(session, "items", [n for n in names if n not in created]), len(created)


def _found(session: Session, table: Literal["users", "items"], names: list[str]) -> dict[str, int]:
    """External id -> id of those of ``names`` that exist (created meanwhile by another transaction)."""
    return {n: int(i) for n, i in zip(names, ids_of(session, table, names), strict=True) if i >= 0}


def stored_event_ids(session: Session, event_ids: Sequence[str]) -> set[str]:
    """Those of ``event_ids`` that are stored."""
    if not event_ids:
        return set()
    return {str(e) for (e,) in driver_connection(session).execute(_STORED_EVENT_IDS, [list(event_ids)])}


def stored_keys(session: Session, user_ids: Sequence[int], keys: Sequence[bytes]) -> set[tuple[int, bytes]]:
    """Those of the (user id, content key) pairs that are stored."""
    if not keys:
        return set()
    params = {"users": list(user_ids), "keys": [uuid.UUID(bytes=k) for k in keys]}
    return {(int(u), k.bytes) for u, k in session.execute(_STORED_KEYS, params)}


def now(session: Session) -> datetime:
    """The transaction's time (what an untimed event is stamped with)."""
    moment: datetime = session.execute(_NOW).scalar_one()
    return moment


def copy(session: Session, data: bytes | bytearray) -> int:
    """COPY binary tuples (with header and trailer) into ``interactions``; returns the rows written.
    Raises one of :data:`REDO` when a row's event is stored (nothing of this COPY is then kept)."""
    with driver_connection(session).cursor() as cursor:
        with cursor.copy(COPY) as copy:
            copy.write(data)
        return int(cursor.rowcount)
