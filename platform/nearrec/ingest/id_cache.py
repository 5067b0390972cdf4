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
import pyarrow as pa
import pyarrow.compute as pc
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
        # per table: the positions of the names the last lookup did not find in the cache
        self._asked: dict[Table, npt.NDArray[np.intp]] = {}
        # per table: the known names as an array and their ids, for lookups in C (rebuilt when they change)
        self._arrays: dict[Table, tuple[pa.Array, npt.NDArray[np.int64]]] = {}
        self.looked_up = 0  # names asked of the database (for tests and benches)

    def check(self, session: Session) -> None:
        """Forget every id when a user or item may have been deleted since they were learnt. Call in the
        batch's transaction, after :data:`nearrec.postgres.history.LOCK_FOR_INSERT`."""
        mark = history.deletions(session)
        if mark != self._mark:
            self._known = {"users": {}, "items": {}}
            self._arrays.clear()
            self._mark = mark

    def ids(
        self, session: Session, table: Table, names: Sequence[str], array: pa.Array | None = None
    ) -> npt.NDArray[np.int64]:
        """The id of each of ``names`` (-1: none; ``array``: the same names as strings, if at hand): from the
        cache, the others from the database."""
        out = self._cached(table, names, array)
        asked = self._asked[table] = np.flatnonzero(out < 0)
        if len(asked):
            out[asked] = ids_of(session, table, [names[int(k)] for k in asked])
            self.looked_up += len(asked)
        return out

    def _cached(self, table: Table, names: Sequence[str], array: pa.Array | None) -> npt.NDArray[np.int64]:
        known = self._known[table]
        if not known:
            return np.full(len(names), -1, dtype=np.int64)
        if table not in self._arrays:
            self._arrays[table] = (pa.array(list(known), pa.string()), np.fromiter(known.values(), np.int64))
        known_names, known_ids = self._arrays[table]
        where = array if array is not None else pa.array(list(names), pa.string())
        at = pc.fill_null(pc.index_in(where, value_set=known_names), -1).to_numpy(zero_copy_only=False)
        return np.where(at >= 0, known_ids[np.maximum(at, 0)], -1).astype(np.int64)

    def learn(self, table: Table, names: Sequence[str], ids: npt.NDArray[np.int64]) -> None:
        """The ids of ``names`` (those of the last :meth:`ids` call, now with the created ones) known in the
        current batch's transaction: kept once it commits (:meth:`committed`)."""
        known, pending = self._known[table], self._pending[table]
        room = self.max_names - len(known) - len(pending)
        asked = self._asked.pop(table, np.arange(len(names)))
        for k in asked[ids[asked] >= 0][: max(room, 0)].tolist():
            if names[k] not in known:
                pending[names[k]] = int(ids[k])

    def committed(self) -> None:
        """The batch committed: what it learnt is true."""
        for table, pending in self._pending.items():
            if pending:
                self._known[table].update(pending)
                self._arrays.pop(table, None)
                pending.clear()

    def rolled_back(self) -> None:
        """The batch was rolled back: forget what it learnt."""
        for pending in self._pending.values():
            pending.clear()
