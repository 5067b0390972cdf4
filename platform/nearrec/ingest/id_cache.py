"""The user and item ids a load has already resolved, kept across its batches (the COPY path of
interactions, :mod:`nearrec.ingest.copy_write`).

A file names the same users and items in batch after batch: looking every name up again costs a join of the
whole batch's names per batch. An id learnt in a committed batch stays true until the user or item is
deleted, and every delete first bumps the deletion counter (:func:`nearrec.postgres.history.deletions`)
while it holds the lock that keeps inserts out. So each batch, once it holds the insert lock, reads the
counter: when it moved since the ids were learnt, they are all forgotten. Ids learnt in a batch are kept
only once that batch commits (a rolled-back batch may have created users that do not exist), and the cache
holds at most :data:`MAX_NAMES` names per table (memory stays flat on any file).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from nearrec.postgres import history
from nearrec.postgres.ids import ids_of

Table = Literal["users", "items"]
# A bound on memory (about 100 bytes a name), not a speed setting: names beyond it are looked up each batch.
MAX_NAMES = 500_000


class IdCache:
    """External id -> internal id of the users and items met by earlier committed batches of one load."""

    def __init__(self, max_names: int = MAX_NAMES) -> None:
        self.max_names = max_names
        self._known: dict[Table, dict[str, int]] = {"users": {}, "items": {}}
        self._pending: dict[Table, dict[str, int]] = {"users": {}, "items": {}}
        self._mark: tuple[int, bool] | None = None
        self.looked_up = 0  # names asked of the database (for tests and benches)

    def check(self, session: Session) -> None:
        """Forget every id when a user or item may have been deleted since they were learnt. Call in the
        batch's transaction, after :data:`nearrec.postgres.history.LOCK_FOR_INSERT`."""
        mark = history.deletions(session)
        if mark != self._mark:
            self._known = {"users": {}, "items": {}}
            self._mark = mark

    def ids(self, session: Session, table: Table, names: Sequence[str]) -> npt.NDArray[np.int64]:
        """The id of each of ``names`` (-1: none): from the cache, the others from the database."""
        known = self._known[table]
        out = np.fromiter((known.get(n, -1) for n in names), dtype=np.int64, count=len(names))
        asked = np.flatnonzero(out < 0)
        if len(asked):
            out[asked] = ids_of(session, table, [names[int(k)] for k in asked])
            self.looked_up += len(asked)
        return out

    def learn(self, table: Table, names: Sequence[str], ids: npt.NDArray[np.int64]) -> None:
        """Ids known in the current batch's transaction: kept once it commits (:meth:`committed`)."""
        known, pending = self._known[table], self._pending[table]
        room = self.max_names - len(known) - len(pending)
        for name, i in zip(names, ids.tolist(), strict=True):
            if room <= 0:
                break
            if i >= 0 and name not in known and name not in pending:
                pending[name] = i
                room -= 1

    def committed(self) -> None:
        """The batch committed: what it learnt is true."""
        for table, pending in self._pending.items():
            self._known[table].update(pending)
            pending.clear()

    def rolled_back(self) -> None:
        """The batch was rolled back: forget what it learnt."""
        for pending in self._pending.values():
            pending.clear()
