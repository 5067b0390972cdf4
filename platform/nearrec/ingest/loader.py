"""Loading whole files: the entry point's side of ingestion (used by ``nearrec ingest`` and the bench).

Every file is opened and its columns checked before anything is written, so a missing column or an empty
file fails with nothing loaded. Then rows stream through in batches: this thread reads and validates
batch N+1 while a writer thread, on ONE connection, writes batch N (Postgres and Python work in parallel;
at most one batch waits in between, so memory stays flat).

- ``on_error="skip"``: one transaction per batch; bad records are reported and skipped. The batches commit
  without waiting for their WAL to reach the disk, and one synchronous commit at the end makes them all
  durable before the load returns (see :func:`nearrec.postgres.staging.flush_commits`). A file that becomes
  unreadable midway (an undecodable byte) stops the load; the batches before it stay committed and the
  summary carries the error.
- ``on_error="abort"``: one transaction for everything; the first bad record rolls it all back.

``prune`` (items) deactivates active items absent from all the files, in a last step that runs only if
every file was read to the end and at least one row was valid. The ids read (those of rejected rows too)
are kept in a temporary table on the writer's connection.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from nearrec.errors import InputFileError
from nearrec.ingest import columnar, copy_write, csv_batches, item_batches, item_write, service
from nearrec.ingest.events import EventCounter
from nearrec.ingest.readers import ReadOptions, RecordReader, batched, detect_format, open_reader
from nearrec.ingest.records import (
    InteractionOptions,
    ItemOptions,
    RecordRejectedError,
    Rejection,
    UserOptions,
    check_columns,
    item_text_columns,
)
from nearrec.ingest.schema import Schema
from nearrec.ingest.service import OnError, Prepared, RecordOptions
from nearrec.ingest.summary import Kind, Summary
from nearrec.postgres import staging

KEEP_REJECTIONS = 1000  # kept in the summary for display; all of them go to the on_rejections callback
_QUEUE_DEPTH = 1  # batches ready and waiting for the writer (one more is being read)


@dataclass(frozen=True)
class LoadPlan:
    kind: Kind
    files: Sequence[Path]
    options: RecordOptions
    read: ReadOptions = ReadOptions()
    on_error: OnError = "skip"
    batch_size: int = service.DEFAULT_BATCH_SIZE
    prune: bool = False
    max_attributes: int = service.DEFAULT_MAX_ATTRIBUTES
    # Rows per batch of the columnar path (interaction CSV; None: batch_size). Bigger batches there cost
    # little memory (columns, not Python rows) and amortise the per-batch statements.
    fast_batch_size: int | None = None


def preflight(plan: LoadPlan) -> list[str]:
    """Open every file and check its columns; raises :class:`InputFileError`. Returns notes to show."""
    if plan.prune and plan.kind != "items":
        raise ValueError("prune applies to items only")
    notes: list[str] = []
    for path in plan.files:
        with open_reader(path, plan.read) as reader:
            if reader.columns:  # JSON Lines: the keys of the first record
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
    whole, and in abort mode :class:`~nearrec.ingest.records.RecordRejectedError` (nothing loaded).

    ``on_rejections`` is called (from the writer thread) with every rejection, in line order per batch.
    """
    started = time.perf_counter()
    summary = Summary(plan.kind, notes=preflight(plan))
    with Session(engine) as session:
        schema = service.load_schema(session, plan.kind, plan.options, plan.max_attributes)
    sizes = [max(Path(p).stat().st_size, 1) for p in plan.files]
    total = float(sum(sizes))
    writer = _Writer(engine, plan, summary, on_rejections)
    writer.start()
    try:
        for index, path in enumerate(plan.files):
            progress = _Progress(on_progress, sum(sizes[:index]), sizes[index], total)
            if _fast(plan, path):
                _load_fast(plan, Path(path), writer, progress, schema)
            else:
                _load_rows(plan, Path(path), writer, schema, progress)
    except InputFileError as exc:
        if plan.on_error == "abort":
            writer.abort()
            raise
        summary.error = str(exc)
        writer.finish(prune=False)
    except RecordRejectedError as exc:
        writer.abort()
        if on_rejections is not None:
            on_rejections([exc.rejection])
        raise
    except BaseException:
        writer.abort()
        raise
    else:
        writer.finish(prune=plan.prune)
    summary.seconds = time.perf_counter() - started
    return summary


def _fast(plan: LoadPlan, path: Path) -> bool:
    if plan.kind not in ("interactions", "items"):
        return False
    fmt = detect_format(Path(path), plan.read.format)
    delimiter = plan.read.delimiter or ("\t" if fmt == "tsv" else ",")
    return csv_batches.usable(Path(path), plan.read.encoding, fmt, delimiter)


@dataclass(frozen=True)
class _Progress:
    """Reports the fraction of all the plan's bytes done, given the fraction of one file."""

    callback: Callable[[float], None] | None
    before: float  # bytes of the files before this one
    size: float
    total: float

    def __call__(self, fraction_of_file: float) -> None:
        if self.callback is not None:
            self.callback((self.before + fraction_of_file * self.size) / self.total)


def _file_options(plan: LoadPlan, reader: RecordReader) -> RecordOptions:
    options = plan.options
    if isinstance(options, ItemOptions):
        return dataclasses.replace(
            options,
            infer_types=reader.text_values,
            # Fixed columns: resolve the default text columns once, not per row.
            text_columns=options.text_columns
            or (item_text_columns(options, reader.columns) if reader.fixed_columns else None),
        )
    if isinstance(options, UserOptions):
        return dataclasses.replace(options, infer_types=reader.text_values)
    return options


def _load_rows(
    plan: LoadPlan, path: Path, writer: _Writer, schema: Schema | None, progress: _Progress
) -> None:
    """One file through the row path: read, validate in batches, hand each to the writer."""
    with open_reader(path, plan.read) as reader:
        options = _file_options(plan, reader)
        events = EventCounter()  # repeats of untimed rows are numbered per file
        for chunk in batched(reader, plan.batch_size):
            batch = service.prepare(
                plan.kind,
                chunk,
                options,
                source=str(path),
                on_error=plan.on_error,
                schema=schema,
                events=events,
            )
            writer.put(batch)
            progress(reader.fraction_done())


def _load_fast(
    plan: LoadPlan, path: Path, writer: _Writer, progress: _Progress, schema: Schema | None
) -> None:
    """A CSV/TSV file of interactions or items through its fast path (:mod:`nearrec.ingest.columnar`,
    :mod:`nearrec.ingest.item_batches`)."""
    fmt = detect_format(path, plan.read.format)
    delimiter = plan.read.delimiter or ("\t" if fmt == "tsv" else ",")
    batches: csv_batches.CsvBatches
    if isinstance(plan.options, ItemOptions):
        assert schema is not None
        batches = item_batches.ItemBatches(
            path, delimiter, plan.options, schema,
            encoding=plan.read.encoding, on_error=plan.on_error, batch_rows=plan.batch_size,
        )  # fmt: skip
    else:
        assert isinstance(plan.options, InteractionOptions)
        batches = columnar.InteractionBatches(
            path, delimiter, plan.options,
            on_error=plan.on_error, batch_rows=plan.fast_batch_size or plan.batch_size,
        )  # fmt: skip
    try:
        for batch in batches:
            writer.put(batch)
            progress(batches.fraction_done())
    finally:
        batches.close()


class _Writer(threading.Thread):
    """Owns the connection and the transactions; writes prepared batches in order."""

    def __init__(
        self,
        engine: Engine,
        plan: LoadPlan,
        summary: Summary,
        on_rejections: Callable[[Sequence[Rejection]], None] | None,
    ) -> None:
        super().__init__(name="nearrec-ingest-writer", daemon=True)
        self.engine = engine
        self.plan = plan
        self.summary = summary
        self.on_rejections = on_rejections
        self.queue: queue.Queue[Prepared | None] = queue.Queue(maxsize=_QUEUE_DEPTH)
        self.error: BaseException | None = None
        self.prune = False
        self._aborting = threading.Event()  # abort: roll back and exit
        self._unflushed = False  # skip mode: batches committed without waiting for the WAL flush
        # the COPY path of interactions (see copy_write)
        self.copy_state = copy_write.CopyState(
            refreshes=copy_write.Refreshes(one_transaction=plan.on_error != "skip")
        )
        self.item_state = item_write.WriteState()  # and of items (see item_write)

    def put(self, batch: Prepared) -> None:
        """Hand a batch over; blocks while the writer is behind. Raises the writer's error, if any."""
        while True:
            self._raise_error()
            try:
                self.queue.put(batch, timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self, *, prune: bool) -> None:
        """No more batches: commit (and prune), wait, and raise the writer's error, if any."""
        self.prune = prune
        while self.is_alive():
            try:
                self.queue.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        self.join()
        self._raise_error()

    def abort(self) -> None:
        """Stop now and roll back what is not committed."""
        self._aborting.set()
        self.join()

    def _raise_error(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def run(self) -> None:
        try:
            with self.engine.connect() as connection, Session(bind=connection) as session:
                try:
                    self._run(session)
                finally:
                    if self._unflushed:  # the batches committed without waiting: make them durable now
                        staging.flush_commits(session)
        except _Aborted:
            pass
        except BaseException as exc:
            self.error = exc

    def _unit(self, session: Session) -> AbstractContextManager[object]:
        return session.begin() if self.plan.on_error == "skip" else nullcontext()

    def _run(self, session: Session) -> None:
        plan = self.plan
        with nullcontext() if plan.on_error == "skip" else session.begin():
            if plan.prune:
                with self._unit(session):
                    service.start_prune_tracking(session)
            while True:
                batch = self._next()
                if batch is None:
                    break
                try:
                    with self._unit(session):
                        if plan.on_error == "skip":
                            staging.commit_without_waiting(session)  # flushed once at the end
                            self._unflushed = True
                        result = self._write(session, batch)
                except BaseException:
                    self.copy_state.rolled_back()
                    raise
                self.copy_state.committed()
                _merge(self.summary, result, self.on_rejections)
            if self._aborting.is_set():
                raise _Aborted  # rolls back the open transaction (abort mode: everything)
            if self.prune and self.summary.loaded == 0:
                self.summary.notes.append("not pruning: no valid row was read")
            elif self.prune:
                with self._unit(session):
                    self.summary.pruned = service.prune_items(session)
                self.summary.enqueued += self.summary.pruned

    def _write(self, session: Session, batch: Prepared) -> Summary:
        if batch.items is not None:
            return item_write.write(session, batch, track_seen=self.plan.prune, state=self.item_state)
        if batch.direct is not None:
            assert isinstance(self.plan.options, InteractionOptions)
            return copy_write.write(session, batch, self.plan.options, self.copy_state)
        return service.write(session, batch, self.plan.options, track_seen=self.plan.prune)

    def _next(self) -> Prepared | None:
        while not self._aborting.is_set():
            try:
                return self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
        return None


class _Aborted(Exception):
    """The loader stopped the writer."""


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
