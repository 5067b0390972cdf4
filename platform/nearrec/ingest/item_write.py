"""Writing the item batches of the fast path of files (:mod:`nearrec.ingest.item_batches`).

A load COPYs a batch straight into ``items`` with ids reserved from its sequence, and their outbox rows
too, in a savepoint: no lookup, no staging table, no INSERT ... SELECT. When the COPY meets a stored item (a
re-load), the batch's ids are looked up, and ids reserved for the items not stored yet, in one round trip,
and only those are COPYed; so are the next batches until one has nothing stored. Stored ones go through
the staged upsert (:func:`nearrec.postgres.items.upsert`: updated only if they changed, reactivated). If
another load stores one of the new items meanwhile, the COPY fails as a whole and the batch goes through the
staged upsert (whose ON CONFLICT statement handles that load's rows). The last row of an id in a batch wins,
as in the staged upsert.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from sqlalchemy.orm import Session

from nearrec.ingest import service
from nearrec.ingest.service import Prepared
from nearrec.ingest.summary import Summary
from nearrec.postgres import items as items_repo
from nearrec.postgres.ids import ids_or_new, reserve_ids
from nearrec.postgres.staging import UpsertCounts

STAGED = pa.schema([("line", pa.int64()), ("external_id", pa.string()), ("title", pa.string()),
                    ("text", pa.string()), ("attributes", pa.string()), ("content_hash", pa.string())])  # fmt: skip
_CSV = pcsv.WriteOptions(include_header=False, quoting_style="needed")


@dataclass(frozen=True)
class ItemRows:
    """The staged rows of a batch (columns of :data:`STAGED`), the last row of each id only."""

    table: pa.Table
    superseded: int  # rows left out: a later row of the batch has the same id

    @classmethod
    def of(cls, rows: list[tuple[object, ...]], typed: pa.Table | None = None) -> ItemRows:
        """Staged tuples, and rows already in columns (``typed``, of :data:`STAGED`'s columns), merged in
        line order."""
        tables = [] if typed is None else [typed.cast(STAGED)]
        if rows:
            columns = [
                pa.array(list(c), type=f.type) for c, f in zip(zip(*rows, strict=True), STAGED, strict=True)
            ]
            tables.append(pa.Table.from_arrays(columns, schema=STAGED))
        if not tables:
            return cls(STAGED.empty_table(), 0)
        table = pa.concat_tables(tables)
        if len(tables) > 1:
            table = table.take(pc.sort_indices(table, [("line", "ascending")]))
        return cls.last_of_each(table)

    @classmethod
    def last_of_each(cls, table: pa.Table) -> ItemRows:
        """The rows of ``table`` (in line order) but the last of each id."""
        if not table.num_rows:
            return cls(STAGED.empty_table(), 0)
        codes = pc.dictionary_encode(table.column("external_id").combine_chunks()).indices.to_numpy()
        _, first_from_end = np.unique(codes[::-1], return_index=True)
        superseded = table.num_rows - len(first_from_end)
        if superseded:
            table = table.take(pa.array(np.sort(table.num_rows - 1 - first_from_end)))
        return cls(table, superseded)

    @property
    def size(self) -> int:
        return int(self.table.num_rows)

    def names(self) -> list[str]:
        return [str(name) for name in self.table.column("external_id").to_pylist()]

    def staged_csv(self, keep: npt.NDArray[np.bool_]) -> bytes:
        """The kept rows as CSV, the staging table's columns."""
        return _csv(self.table if keep.all() else self.table.filter(pa.array(keep)))

    def new_csv(self, keep: npt.NDArray[np.bool_], ids: npt.NDArray[np.int64]) -> bytes:
        """The kept rows as CSV for a COPY into ``items``, with their ``ids``."""
        table = self.table if keep.all() else self.table.filter(pa.array(keep))
        return _csv(table.drop_columns(["line"]).add_column(0, "id", pa.array(ids, pa.int64())))


def _csv(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pcsv.write_csv(table, buffer, _CSV)
    return buffer.getvalue()


@dataclass
class WriteState:
    """What one load has learnt: whether its batches meet stored items (then each batch's ids are looked up
    before its COPY, until a batch has none stored)."""

    look_up: bool = False


def write(session: Session, batch: Prepared, *, track_seen: bool, state: WriteState | None = None) -> Summary:
    """Write the batch in the caller's transaction; returns its summary (rejections in line order)."""
    assert batch.items is not None
    rows = batch.items
    summary = Summary("items", read=batch.read, nul_stripped=batch.nul_stripped)
    if batch.new_attributes:
        service.store_schema_additions(session, "item", batch.new_attributes)
    names = rows.names()
    new, inserted = _copy_new(session, rows, names, state or WriteState())
    stored = ~new
    counts = (
        items_repo.upsert(session, rows.staged_csv(stored), track_seen=track_seen)
        if stored.any()
        else UpsertCounts(0, 0)
    )
    if track_seen:
        items_repo.add_seen(session, [n for n, k in zip(names, new, strict=True) if k] + batch.rejected_ids)
    summary.inserted, summary.updated = inserted + counts.inserted, counts.updated
    summary.enqueued = summary.inserted + summary.updated
    summary.unchanged = rows.superseded + rows.size - summary.enqueued
    summary.rejections = sorted(batch.rejections, key=lambda r: r.line)
    summary.rejected = len(summary.rejections)
    return summary


def _copy_new(
    session: Session, rows: ItemRows, names: list[str], state: WriteState
) -> tuple[npt.NDArray[np.bool_], int]:
    """COPY the batch's items not stored yet; returns which they are and how many were inserted."""
    if not rows.size:
        return np.zeros(0, dtype=bool), 0
    if not state.look_up:  # as the batches before: nothing stored, so COPY them all with new ids
        ids = reserve_ids(session, "items", rows.size)
        everything = np.ones(rows.size, dtype=bool)
        try:
            with session.begin_nested():
                return everything, items_repo.copy_new(session, rows.new_csv(everything, ids), ids)
        except items_repo.DUPLICATE:  # one is stored: look them up
            state.look_up = True
    ids = ids_or_new(session, "items", names)  # new ones: minus the id reserved for them
    new = ids < 0
    state.look_up = not new.all()
    inserted = 0
    if new.any():
        try:
            with session.begin_nested():
                inserted = items_repo.copy_new(session, rows.new_csv(new, -ids[new]), -ids[new])
        except items_repo.DUPLICATE:  # another load stored one meanwhile
            new[:] = False  # all of them through the staged upsert
    return new, inserted
