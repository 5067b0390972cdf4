"""Writing a :class:`~nearrec.ingest.direct.DirectBatch`: COPY straight into ``interactions``.

In the writer's transaction, after taking the lock that keeps deletes out: look up the item ids (a row naming
an unknown item is rejected, or the item is created as a placeholder on request) and the user ids (those not
learnt by an earlier batch of the load: :mod:`nearrec.ingest.id_cache`); then,
in a savepoint, create the missing users of the rows that will be written, fill the ids into the COPY
tuples, and COPY. The unique indexes of ``interactions`` decide what is a repeat:

- A load starts optimistic: no question asked, the COPY itself finds any stored event, fails, and the
  savepoint is rolled back (so the users it created are gone too).
- It then asks, for this batch and the next ones, which events are stored (one index probe per row), and
  COPYs the others. After a batch with no stored event it goes back to COPY without asking.
- When a COPY fails although its events were asked about (another load stored one of them meanwhile), the
  batch goes through the staging table's ON CONFLICT statement (:mod:`nearrec.postgres.interactions`).

So a rejected or repeated event creates nothing, an interaction never names a missing user or item, a
re-load inserts nothing, and two loads of the same events at once store each of them once.

Each batch leaves a pending refresh for every user it wrote to: :func:`nearrec.postgres.outbox.enqueue_refresh`
for the users whose refresh no earlier batch of the load holds (:class:`Refreshes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.orm import Session

from nearrec.ingest import direct as d
from nearrec.ingest import service
from nearrec.ingest.id_cache import MAX_NAMES, IdCache
from nearrec.ingest.records import InteractionOptions, RecordRejectedError, Rejection
from nearrec.ingest.service import Prepared
from nearrec.ingest.summary import Summary
from nearrec.ingest.values import EMPTY_TEXT_HASH
from nearrec.postgres import copy_binary, history, outbox
from nearrec.postgres import interaction_copy as repo


class Refreshes:
    """The users whose pending refresh an earlier batch of the load locked or wrote (their ids, sorted).

    In one transaction (abort mode) those rows stay locked or unseen until the load commits. With a
    transaction per batch they are still pending as long as no worker has taken a user refresh since
    (:func:`nearrec.postgres.outbox.user_refresh_mark`); when one has, they are all checked again."""

    def __init__(self, one_transaction: bool, max_users: int = MAX_NAMES) -> None:
        self.one_transaction = one_transaction
        self.max_users = max_users
        self._held = np.empty(0, dtype=np.int64)
        self._pending = np.empty(0, dtype=np.int64)
        self._mark: tuple[int, bool] | None = None

    def enqueue(self, session: Session, users: npt.NDArray[np.int64]) -> int:
        """Enqueue the refresh of ``users`` (distinct ids) that no earlier batch holds; returns how many
        rows were added."""
        if not self.one_transaction:
            mark = outbox.user_refresh_mark(session)
            if mark != self._mark:
                self._held, self._mark = np.empty(0, dtype=np.int64), mark
        todo = users[~np.isin(users, self._held, assume_unique=True)]
        self._pending = todo
        return outbox.enqueue_refresh(session, "user", todo.tolist())

    def committed(self) -> None:
        if len(self._pending) and len(self._held) + len(self._pending) <= self.max_users:
            self._held = np.union1d(self._held, self._pending)
        self._pending = np.empty(0, dtype=np.int64)

    def rolled_back(self) -> None:
        self._pending = np.empty(0, dtype=np.int64)


@dataclass
class CopyState:
    """What one load has learnt: whether its batches meet stored events (then each is asked about)."""

    probe: bool = False
    fallbacks: int = 0  # batches written by the ON CONFLICT statement
    ids: IdCache = field(default_factory=IdCache)  # user and item ids learnt by committed batches
    refreshes: Refreshes = field(default_factory=lambda: Refreshes(one_transaction=False))

    def committed(self) -> None:
        """The batch committed (or, in one transaction, was written): what it learnt is true."""
        self.ids.committed()
        self.refreshes.committed()

    def rolled_back(self) -> None:
        self.ids.rolled_back()
        self.refreshes.rolled_back()


def write(session: Session, batch: Prepared, options: InteractionOptions, state: CopyState) -> Summary:
    """Write the batch in the caller's transaction; returns its summary (rejections in line order)."""
    assert batch.direct is not None
    rows = batch.direct
    session.execute(history.LOCK_FOR_INSERT)
    summary = Summary("interactions", read=batch.read, unchanged=rows.repeats)
    rejections = list(batch.rejections)
    state.ids.check(session)
    item_ids = state.ids.ids(session, "items", rows.items, rows.item_names)
    user_ids = state.ids.ids(session, "users", rows.users, rows.user_names)
    keep = np.ones(rows.size, dtype=bool)
    if not options.create_missing_items:
        unknown = item_ids[rows.item_of] < 0
        rejections += [_unknown_item(batch, rows, int(r)) for r in np.flatnonzero(unknown)]
        keep &= ~unknown
    for attempt in ("first", "again"):
        asked = state.probe
        stored = _stored(session, rows, user_ids, keep) if asked else np.zeros(rows.size, dtype=bool)
        written = keep & ~stored
        try:
            with session.begin_nested():
                done = _copy(session, rows, written, item_ids.copy(), user_ids.copy(), options)
        except repo.REDO:
            if asked or attempt == "again":
                state.fallbacks += 1
                return _fallback(session, batch, options)
            state.probe = True
            continue
        state.probe = bool(stored.any())
        state.ids.learn("users", rows.users, done.user_ids)
        state.ids.learn("items", rows.items, done.item_ids)
        break
    summary.inserted, summary.users_created, summary.items_created = done.inserted, done.users, done.items
    summary.unchanged += int(stored.sum())
    users = np.unique(done.user_ids[rows.user_of[written]])
    summary.enqueued = state.refreshes.enqueue(session, users)
    rejections.sort(key=lambda r: r.line)
    summary.rejected, summary.rejections = len(rejections), rejections
    return summary


def _unknown_item(batch: Prepared, rows: d.DirectBatch, row: int) -> Rejection:
    item = rows.items[int(rows.item_of[row])]
    rejection = Rejection(
        batch.source,
        _line(batch, int(rows.lines[row])),
        "item_id",
        f"unknown item {item!r}: load the item first, or ask the load to create missing items",
    )
    if batch.on_error == "abort":
        raise RecordRejectedError(rejection)
    return rejection


def _line(batch: Prepared, record: int) -> int:
    return batch.line_of(record) if batch.line_of is not None else record


def _stored(
    session: Session, rows: d.DirectBatch, user_ids: npt.NDArray[np.int64], keep: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """Which rows' events are stored. A content key is asked about only for a known user (a new user has
    no stored event)."""
    event_ids = rows.table.column("event_id").combine_chunks()
    has_id = pc.is_valid(event_ids).to_numpy(zero_copy_only=False)
    out = np.zeros(rows.size, dtype=bool)
    asked = np.flatnonzero(keep & has_id)
    if len(asked):
        names = event_ids.take(asked).to_pylist()
        found = repo.stored_event_ids(session, names)
        out[asked] = [n in found for n in names]
    users = user_ids[rows.user_of]
    asked = np.flatnonzero(keep & ~has_id & (users >= 0))
    if len(asked):
        keys = rows.table.column("event_key").combine_chunks().take(asked).to_pylist()
        pairs = repo.stored_keys(session, users[asked].tolist(), keys)
        out[asked] = [(int(u), k) in pairs for u, k in zip(users[asked], keys, strict=True)]
    return out


@dataclass(frozen=True)
class _Copied:
    inserted: int
    users: int  # created
    items: int  # created
    user_ids: npt.NDArray[np.int64]  # per distinct user of the batch, now with the created ones
    item_ids: npt.NDArray[np.int64]  # per distinct item of the batch, now with the created ones


def _copy(
    session: Session,
    rows: d.DirectBatch,
    written: npt.NDArray[np.bool_],
    item_ids: npt.NDArray[np.int64],
    user_ids: npt.NDArray[np.int64],
    options: InteractionOptions,
) -> _Copied:
    """Create the missing users (and placeholder items) of the written rows, then COPY them (the id arrays
    are filled in place)."""
    items_created = 0
    if options.create_missing_items:
        missing = _missing(item_ids, rows.item_of[written])
        found, items_created = repo.create_items(session, [rows.items[k] for k in missing], EMPTY_TEXT_HASH)
        item_ids[missing] = [found[rows.items[k]] for k in missing]
    missing = _missing(user_ids, rows.user_of[written])
    found, users_created = repo.create_users(session, [rows.users[k] for k in missing])
    user_ids[missing] = [found[rows.users[k]] for k in missing]
    tuples = rows.tuples if written.all() else rows.tuples.filter(pa.array(written))
    if not len(tuples):
        return _Copied(0, users_created, items_created, user_ids, item_ids)
    data, starts = copy_binary.payload(tuples)
    copy_binary.patch_int8(data, starts, d.USER_OFFSET, user_ids[rows.user_of[written]])
    copy_binary.patch_int8(data, starts, d.ITEM_OFFSET, item_ids[rows.item_of[written]])
    untimed = rows.untimed[written]
    if untimed.any():
        moment = copy_binary.timestamptz_of(repo.now(session))
        copy_binary.patch_int8(data, starts[untimed], d.TIME_OFFSET, np.full(int(untimed.sum()), moment))
    return _Copied(repo.copy(session, data), users_created, items_created, user_ids, item_ids)


def _missing(ids: npt.NDArray[np.int64], used: npt.NDArray[np.int32]) -> list[int]:
    """Indices (into the batch's distinct names) used by the written rows that have no id yet."""
    wanted = np.unique(used)
    return [int(k) for k in wanted[ids[wanted] < 0]]


def _fallback(session: Session, batch: Prepared, options: InteractionOptions) -> Summary:
    """The batch through the staging table's ON CONFLICT statement (rows, repeats and rejections as read)."""
    assert batch.direct is not None
    staged = Prepared("interactions", batch.source, batch.on_error, read=batch.read)
    staged.rejections = list(batch.rejections)
    staged.payload, staged.staged, staged.line_of = (
        batch.direct.staging_csv(),
        batch.direct.size,
        batch.line_of,
    )
    summary = service.write(session, staged, options)
    summary.unchanged += batch.direct.repeats
    return summary
