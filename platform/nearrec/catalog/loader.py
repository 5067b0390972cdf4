"""Loading whole files: the entry point's side of ingestion (used by ``nearrec ingest`` and the bench).

Every file is opened and its columns checked before anything is written, so a missing column or an empty
file fails with nothing loaded. Then rows stream through in batches on ONE connection:

- ``on_error="skip"``: one transaction per batch; bad records are reported and skipped. A file that becomes
  unreadable midway (an undecodable byte) stops the load; the batches before it stay committed and the
  summary carries the error.
- ``on_error="abort"``: one transaction for everything; the first bad record rolls it all back.

``prune`` (items) deactivates active items absent from all the files, in a last step that runs only if
every file was read to the end. The ids read are kept in a temporary table on that connection.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from nearrec.catalog import service
from nearrec.catalog.readers import ReadOptions, RecordReader, batched, open_reader
from nearrec.catalog.records import (
    InteractionOptions,
    ItemOptions,
    RecordRejectedError,
    Rejection,
    UserOptions,
    check_columns,
)
from nearrec.catalog.service import Kind, OnError, Summary
from nearrec.errors import InputFileError

RecordOptions = ItemOptions | UserOptions | InteractionOptions
KEEP_REJECTIONS = 1000  # kept in the summary for display; all of them go to the on_rejections callback


@dataclass(frozen=True)
class LoadPlan:
    kind: Kind
    files: Sequence[Path]
    options: RecordOptions
    read: ReadOptions = ReadOptions()
    on_error: OnError = "skip"
    batch_size: int = service.DEFAULT_BATCH_SIZE
    prune: bool = False


def preflight(plan: LoadPlan) -> list[str]:
    """Open every file and check its columns; raises :class:`InputFileError`. Returns notes to show."""
    if plan.prune and plan.kind != "items":
        raise ValueError("prune applies to items only")
    notes: list[str] = []
    for path in plan.files:
        with open_reader(path, plan.read) as reader:
            if reader.columns or reader.text_values:
                notes += check_columns(plan.kind, reader.columns, plan.options, str(path))
    return notes


def load(
    engine: Engine,
    plan: LoadPlan,
    *,
    on_rejections: Callable[[Sequence[Rejection]], None] | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> Summary:
    """Load the plan's files. Raises :class:`InputFileError` (nothing loaded) for a file unusable as a
    whole, and in abort mode :class:`~nearrec.catalog.records.RecordRejectedError` (nothing loaded)."""
    started = time.perf_counter()
    summary = Summary(plan.kind, notes=preflight(plan))
    sizes = [max(Path(p).stat().st_size, 1) for p in plan.files]
    total = float(sum(sizes))
    with engine.connect() as connection, Session(bind=connection) as session:
        per_batch = plan.on_error == "skip"

        def unit() -> AbstractContextManager[object]:
            return session.begin() if per_batch else nullcontext()

        with nullcontext() if per_batch else session.begin():
            if plan.prune:
                with unit():
                    service.start_prune_tracking(session)
            try:
                for index, path in enumerate(plan.files):
                    with open_reader(path, plan.read) as reader:
                        done_before = sum(sizes[:index])
                        for result in _batches(session, plan, reader, unit):
                            _merge(summary, result, on_rejections)
                            if on_progress is not None:
                                on_progress((done_before + reader.fraction_done() * sizes[index]) / total)
            except InputFileError as exc:
                if not per_batch:
                    raise
                summary.error = str(exc)
            except RecordRejectedError as exc:
                if on_rejections is not None:
                    on_rejections([exc.rejection])
                raise
            if plan.prune and summary.error is None:
                with unit():
                    summary.pruned = service.prune_items(session)
                summary.enqueued += summary.pruned
    summary.seconds = time.perf_counter() - started
    return summary


def _batches(
    session: Session, plan: LoadPlan, reader: RecordReader, unit: Callable[[], AbstractContextManager[object]]
) -> Iterator[Summary]:
    source = str(reader.path)
    options = plan.options
    if isinstance(options, ItemOptions | UserOptions):
        options = dataclasses.replace(options, infer_types=reader.text_values)
    for chunk in batched(reader, plan.batch_size):
        with unit():
            if isinstance(options, ItemOptions):
                result = service.ingest_items(
                    session, chunk, options, source=source, on_error=plan.on_error,
                    batch_size=plan.batch_size, track_seen=plan.prune,
                )  # fmt: skip
            elif isinstance(options, UserOptions):
                result = service.ingest_users(
                    session, chunk, options, source=source, on_error=plan.on_error, batch_size=plan.batch_size
                )
            else:
                result = service.ingest_interactions(
                    session, chunk, options, source=source, on_error=plan.on_error, batch_size=plan.batch_size
                )
        yield result


def _merge(
    summary: Summary, result: Summary, on_rejections: Callable[[Sequence[Rejection]], None] | None
) -> None:
    rejections, result.rejections = result.rejections, []
    summary.add(result)
    if rejections:
        if on_rejections is not None:
            on_rejections(rejections)
        room = KEEP_REJECTIONS - len(summary.rejections)
        if room > 0:
            summary.rejections.extend(rejections[:room])
