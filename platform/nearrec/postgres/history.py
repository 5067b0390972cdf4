"""The explicit cascade that replaces the interactions' foreign keys (see ``nearrec.postgres.interactions``).

Deleting users or items: :func:`lock_for_delete` first (it waits for every interaction insert in flight to
commit and keeps new ones out until this transaction ends), then delete the rows, then
:func:`delete_of_users` / :func:`delete_of_items` remove their history, which now includes whatever the
inserts that ran before wrote. Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.types import BigInteger

LOCK_FOR_INSERT = text("LOCK TABLE interactions IN ROW EXCLUSIVE MODE")
_LOCK_FOR_DELETE = text("LOCK TABLE interactions IN SHARE MODE")
# Bumped by every delete once it holds the lock (a sequence: seen at once by every session, committed or not).
# Its name, interaction_deletions, is in migration 0007.
_BUMP_DELETIONS = text("SELECT nextval('interaction_deletions')")
_DELETIONS = text("SELECT last_value, is_called FROM interaction_deletions")
_DELETE_OF_USERS = text("DELETE FROM interactions WHERE user_id = ANY(:ids)").bindparams(
    bindparam("ids", type_=ARRAY(BigInteger))
)
# Returns the users whose history lost an interaction (their vectors are refreshed).
_DELETE_OF_ITEMS = text(
    "WITH gone AS (DELETE FROM interactions WHERE item_id = ANY(:ids) RETURNING user_id)"
    " SELECT DISTINCT user_id FROM gone"
).bindparams(bindparam("ids", type_=ARRAY(BigInteger)))


def lock_for_delete(session: Session) -> None:
    """Wait for interaction inserts in flight, and keep new ones out until the transaction ends; then bump
    the deletion counter (so loads forget the ids they cached: :func:`deletions`)."""
    session.execute(_LOCK_FOR_DELETE)
    session.execute(_BUMP_DELETIONS)


def delete_of_users(session: Session, user_ids: Sequence[int]) -> int:
    """Delete the interactions of these users; returns how many."""
    if not user_ids:
        return 0
    return int(getattr(session.execute(_DELETE_OF_USERS, {"ids": list(user_ids)}), "rowcount", 0))


def delete_of_items(session: Session, item_ids: Sequence[int]) -> list[int]:
    """Delete the interactions of these items; returns the users who had one."""
    if not item_ids:
        return []
    return [int(u) for u in session.execute(_DELETE_OF_ITEMS, {"ids": list(item_ids)}).scalars()]


def deletions(session: Session) -> tuple[int, bool]:
    """The deletion counter (bumped by every :func:`lock_for_delete`): what an id cache compares to know
    whether a user or item may have gone since it learnt their ids (:mod:`nearrec.ingest.id_cache`)."""
    last, called = session.execute(_DELETIONS).one()
    return int(last), bool(called)
