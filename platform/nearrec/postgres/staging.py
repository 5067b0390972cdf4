"""COPY into session-local staging tables, the fast path of every bulk write.

Staging tables are ``TEMPORARY`` (private to the connection) and emptied at each commit; the statements
that read them live next to them in the repository modules. COPY goes through the psycopg connection under
the session, inside the session's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, LiteralString, cast

import psycopg
from sqlalchemy import TextClause, text
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class UpsertCounts:
    """Rows an upsert inserted and rows it changed (identical rows count in neither)."""

    inserted: int
    updated: int


def driver_connection(session: Session) -> psycopg.Connection[Any]:
    """The psycopg connection the session's current transaction runs on."""
    return cast(psycopg.Connection[Any], session.connection().connection.driver_connection)


def prepare(session: Session, create: TextClause, truncate: TextClause) -> None:
    """Create the staging table on first use in this connection, and empty it."""
    session.execute(create)
    session.execute(truncate)


def copy_rows(session: Session, copy_statement: LiteralString, rows: Iterable[Sequence[Any]]) -> int:
    """Stream rows into a ``COPY ... FROM STDIN`` statement (a constant); returns how many were sent."""
    count = 0
    with driver_connection(session).cursor() as cursor, cursor.copy(copy_statement) as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def copy_bytes(session: Session, copy_statement: LiteralString, data: bytes) -> None:
    """Send ready-made COPY data (e.g. CSV built in C by pyarrow) to a ``COPY ... FROM STDIN`` statement."""
    with driver_connection(session).cursor() as cursor, cursor.copy(copy_statement) as copy:
        copy.write(data)


def rowcount(result: object) -> int:
    """Rows affected by an INSERT/UPDATE/DELETE result."""
    return int(getattr(result, "rowcount", 0))


# A bulk load commits many batches. Each batch's commit need not wait for its WAL to reach the disk: one
# synchronous commit at the end flushes the WAL up to its own commit record, so every earlier batch is
# durable before the load reports anything (a crash in between loses only batches of a load that never
# finished, and re-running a load is idempotent).
_NO_COMMIT_WAIT = text("SET LOCAL synchronous_commit = off")
_TAKE_XID = text("SELECT pg_current_xact_id()")  # a transaction with an id writes a commit record


def commit_without_waiting(session: Session) -> None:
    """Let the current transaction's commit return before its WAL is flushed (see :func:`flush_commits`)."""
    session.execute(_NO_COMMIT_WAIT)


def flush_commits(session: Session) -> None:
    """Wait until every transaction committed on this connection is on disk: commit one (tiny) transaction
    synchronously. Call outside a transaction."""
    with session.begin():
        session.execute(_TAKE_XID)
