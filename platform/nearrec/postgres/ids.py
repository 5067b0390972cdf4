"""External ids -> internal ids of a whole batch in one round trip (the bulk loaders' lookup)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, LiteralString

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from nearrec.postgres.staging import driver_connection

# The ids of a batch's names, in their order, as one bytea of big-endian int8 (-1: unknown): no Python
# object per name on the way back. Sent through the driver: a list of 50,000 names costs 20 ms there,
# twice that through SQLAlchemy's array processing.
_IDS_OF: dict[str, LiteralString] = {
    "users": "SELECT string_agg(int8send(coalesce(t.id, -1)), ''::bytea ORDER BY n.k)"
    " FROM unnest(%s::text[]) WITH ORDINALITY AS n(name, k) LEFT JOIN users AS t ON t.external_id = n.name",
    "items": "SELECT string_agg(int8send(coalesce(t.id, -1)), ''::bytea ORDER BY n.k)"
    " FROM unnest(%s::text[]) WITH ORDINALITY AS n(name, k) LEFT JOIN items AS t ON t.external_id = n.name",
}


# The same, where a name not stored gets a new id of the table's identity sequence instead, negated (so the
# caller can COPY the new rows with their ids): nextval runs only for those names (COALESCE stops at the
# first non-NULL argument). The ids reserved by a batch whose COPY then fails are lost, as any rolled-back
# nextval: a sequence has gaps.
_IDS_OR_NEW: dict[str, LiteralString] = {
    "items": "SELECT string_agg(int8send(coalesce(t.id, -nextval(s.seq))), ''::bytea ORDER BY n.k)"
    " FROM (SELECT pg_get_serial_sequence('items', 'id')::regclass AS seq) AS s,"
    " unnest(%s::text[]) WITH ORDINALITY AS n(name, k) LEFT JOIN items AS t ON t.external_id = n.name",
}


def ids_or_new(session: Session, table: Literal["items"], names: Sequence[str]) -> npt.NDArray[np.int64]:
    """The internal id of each of ``names`` (distinct external ids); for a name not stored, minus a new id
    taken from the table's sequence (one round trip for the lookup and the reservation)."""
    if not names:
        return np.empty(0, dtype=np.int64)
    row = driver_connection(session).execute(_IDS_OR_NEW[table], [list(names)]).fetchone()
    assert row is not None
    return np.frombuffer(row[0], dtype=">i8").astype(np.int64)


_RESERVE: dict[str, LiteralString] = {
    "items": "SELECT string_agg(int8send(nextval(s.seq)), ''::bytea)"
    " FROM (SELECT pg_get_serial_sequence('items', 'id')::regclass AS seq) AS s, generate_series(1, %s)",
}


def reserve_ids(session: Session, table: Literal["items"], n: int) -> npt.NDArray[np.int64]:
    """``n`` new ids from the table's identity sequence (one round trip)."""
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    row = driver_connection(session).execute(_RESERVE[table], [n]).fetchone()
    assert row is not None
    return np.frombuffer(row[0], dtype=">i8").astype(np.int64)


def ids_of(session: Session, table: Literal["users", "items"], names: Sequence[str]) -> npt.NDArray[np.int64]:
    """The internal id of each external id of ``names`` (-1: none), in the session's transaction."""
    if not names:
        return np.empty(0, dtype=np.int64)
    row = driver_connection(session).execute(_IDS_OF[table], [list(names)]).fetchone()
    assert row is not None
    return np.frombuffer(row[0], dtype=">i8").astype(np.int64)
