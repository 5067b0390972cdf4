"""Catalog ingestion as a library: validate records, bulk-write them, enqueue vector work.

The same functions serve the CLI (whole files, in batches) and the HTTP API (single records)::

    with transaction(sessions) as session:
        summary = ingest_items(session, numbered([body]), ItemOptions(), source="request", on_error="abort")

They never commit: the caller owns the transaction. ``on_error="skip"`` records a :class:`Rejection` for a
bad record and writes the others; ``"abort"`` raises :class:`RecordRejectedError` at the first one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

import orjson
from sqlalchemy.orm import Session

from nearrec.config import setting_default
from nearrec.errors import ValidationError
from nearrec.ingest.events import EventCounter
from nearrec.ingest.readers import BadRow, Row, batched
from nearrec.ingest.records import (
    InteractionOptions,
    ItemOptions,
    RecordRejectedError,
    Rejection,
    RowError,
    UserOptions,
    parse_interaction,
    parse_item,
    parse_user,
)
from nearrec.ingest.schema import AttributeRejected, AttrType, Entity, Schema
from nearrec.ingest.summary import Kind, Summary
from nearrec.ingest.values import EMPTY_TEXT_HASH, JsonValue
from nearrec.postgres import interactions as interactions_repo
from nearrec.postgres import items as items_repo
from nearrec.postgres import schema_repo
from nearrec.postgres import users as users_repo

if TYPE_CHECKING:
    from nearrec.ingest.direct import DirectBatch
    from nearrec.ingest.item_write import ItemRows

OnError = Literal["skip", "abort"]
RecordOptions = ItemOptions | UserOptions | InteractionOptions
DEFAULT_BATCH_SIZE: int = setting_default("ingest_batch_size")
"""Rows per bulk write when the caller gives none (``Settings.ingest_batch_size``)."""
DEFAULT_MAX_ATTRIBUTES: int = setting_default("max_attributes")
"""Most attributes a schema holds when the caller gives no limit (``Settings.max_attributes``)."""


@dataclass(frozen=True)
class DeleteResult:
    deleted: list[str]
    unknown: list[str]
    users_enqueued: int = 0


def numbered(records: Iterable[Mapping[str, Any]], start: int = 1) -> Iterator[Row]:
    """Number plain records (e.g. HTTP bodies) so they can be passed where file rows are expected."""
    yield from enumerate(records, start)


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _dumps(attributes: Mapping[str, JsonValue]) -> str:
    """Compact JSON text. The values were typed by the schema, so every number is finite; orjson (several
    times faster) refuses only integers beyond 64 bits, which the standard encoder writes."""
    try:
        return orjson.dumps(attributes).decode()
    except orjson.JSONEncodeError:
        return _JSON.encode(attributes)


@dataclass
class Prepared:
    """A validated batch (pure Python, no I/O), ready for :func:`write`."""

    kind: Kind
    source: str
    on_error: OnError
    read: int = 0
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    rejected_ids: list[str] = field(default_factory=list)  # items: ids of rejected records (kept by prune)
    new_attributes: dict[str, AttrType] = field(default_factory=dict)  # schema additions of this batch
    nul_stripped: int = 0
    # Fast paths of CSV files: interactions ready for COPY, items as columns, staged rows as CSV (the
    # fallback of interactions); their lines are record numbers, ``line_of`` gives the physical line.
    direct: DirectBatch | None = None
    items: ItemRows | None = None
    line_of: Callable[[int], int] | None = None
    payload: bytes | None = None
    staged: int = 0

    @property
    def staged_rows(self) -> int:
        return self.staged if self.payload is not None else len(self.rows)

    def reject(self, line: int, field_: str | None, reason: str, record_id: str | None = None) -> None:
        rejection = Rejection(self.source, line, field_, reason, record_id)
        if self.on_error == "abort":
            raise RecordRejectedError(rejection)
        self.rejections.append(rejection)
        if record_id is not None:
            self.rejected_ids.append(record_id)


def load_schema(session: Session, kind: Kind, options: RecordOptions, max_attributes: int) -> Schema | None:
    """The stored attribute schema of items or users, with the options' declared types added (None for
    interactions)."""
    if kind == "interactions" or isinstance(options, InteractionOptions):
        return None
    entity: Entity = "item" if kind == "items" else "user"
    schema = Schema(entity, cast(dict[str, AttrType], schema_repo.load(session, entity)), max_attributes)
    schema.declare(cast(Mapping[str, AttrType], options.types))
    if isinstance(options, ItemOptions | UserOptions):
        schema.declare({c: "list" for c in options.list_columns if c not in schema.types})
    return schema


def typed(
    batch: Prepared, schema: Schema, records: list[tuple[int, Any]], options: ItemOptions | UserOptions
) -> Iterator[tuple[int, Any, str]]:
    """Type the attributes of parsed records by the schema (extending it with the batch's new attributes);
    yields (line, record, attributes as JSON) for the records that fit, rejects the others."""
    refused = schema.extend(
        (r.attributes for _, r in records), text=options.infer_types, max_new=options.max_new_attributes
    )
    batch.new_attributes.update(schema.take_pending())
    for line, record in records:
        bad = next((n for n in record.attributes if n in refused), None)
        if bad is not None:
            batch.reject(line, bad, refused[bad], record.external_id)
            continue
        try:
            typed = schema.apply(record.attributes, text=options.infer_types, list_sep=options.list_sep)
        except AttributeRejected as exc:
            batch.reject(line, exc.name, exc.reason, record.external_id)
            continue
        batch.nul_stripped += record.nuls
        yield line, record, _dumps(typed)


def _parsed(
    batch: Prepared, rows: Iterable[Row], parse: Callable[[Mapping[str, Any]], Any]
) -> list[tuple[int, Any]]:
    records: list[tuple[int, Any]] = []
    for line, raw in rows:
        batch.read += 1
        try:
            if isinstance(raw, BadRow):
                raise RowError(None, raw.reason)
            records.append((line, parse(raw)))
        except RowError as exc:
            batch.reject(line, exc.field, exc.reason, exc.record_id)
    return records


def prepare_items(
    rows: Iterable[Row], options: ItemOptions, *, source: str, on_error: OnError, schema: Schema
) -> Prepared:
    """Validate item records into staged rows; bad ones become rejections (or raise, in abort mode)."""
    batch = Prepared("items", source, on_error)
    records = _parsed(batch, rows, lambda raw: parse_item(raw, options))
    for line, r, document in typed(batch, schema, records, options):
        batch.rows.append((line, r.external_id, r.title, r.text, document, r.content_hash))
    return batch


def prepare_users(
    rows: Iterable[Row], options: UserOptions, *, source: str, on_error: OnError, schema: Schema
) -> Prepared:
    """Validate user records into staged rows."""
    batch = Prepared("users", source, on_error)
    records = _parsed(batch, rows, lambda raw: parse_user(raw, options))
    for line, r, document in typed(batch, schema, records, options):
        batch.rows.append((line, r.external_id, r.profile, document))
    return batch


def prepare_interactions(
    rows: Iterable[Row],
    options: InteractionOptions,
    *,
    source: str,
    on_error: OnError,
    events: EventCounter | None = None,
) -> Prepared:
    """Validate interaction records into staged rows. ``events`` numbers the repeats of rows without a
    timestamp and without an event id within one file (their derived key includes that number)."""
    batch = Prepared("interactions", source, on_error)
    events = events if events is not None else EventCounter()
    staged = batch.rows
    for line, raw in rows:
        batch.read += 1
        try:
            if isinstance(raw, BadRow):
                raise RowError(None, raw.reason)
            record = parse_interaction(raw, options)
        except RowError as exc:
            batch.reject(line, exc.field, exc.reason)
            continue
        staged.append((line, *record, events.occurrence(record)))
    return batch


def prepare(
    kind: Kind,
    rows: Iterable[Row],
    options: RecordOptions,
    *,
    source: str,
    on_error: OnError,
    schema: Schema | None = None,
    events: EventCounter | None = None,
) -> Prepared:
    """Dispatch to the ``prepare_*`` function of the kind (items and users need their ``schema``)."""
    if kind == "items" and isinstance(options, ItemOptions) and schema is not None:
        return prepare_items(rows, options, source=source, on_error=on_error, schema=schema)
    if kind == "users" and isinstance(options, UserOptions) and schema is not None:
        return prepare_users(rows, options, source=source, on_error=on_error, schema=schema)
    if kind == "interactions" and isinstance(options, InteractionOptions):
        return prepare_interactions(rows, options, source=source, on_error=on_error, events=events)
    raise TypeError(f"{type(options).__name__} is not the options of {kind} (or its schema is missing)")


def write(session: Session, batch: Prepared, options: RecordOptions, *, track_seen: bool = False) -> Summary:
    """Write a prepared batch in the caller's transaction; returns its summary (rejections in line order).

    Items: identical items are untouched and enqueue nothing; each inserted, changed or reactivated item
    enqueues exactly one ("item", id, "upsert") outbox row. With ``track_seen`` the ids read (including
    those of rejected records) are remembered for :func:`prune_items`.

    Users: each inserted or changed user enqueues one ("user", id, "upsert").

    Interactions: unknown users are created; unknown items are rejected, or created as inactive placeholders
    with ``create_missing_items``; a repeated event id is ignored (counted as unchanged); each user with new
    interactions is enqueued once, coalesced with pending work.
    """
    summary = Summary(batch.kind, read=batch.read, nul_stripped=batch.nul_stripped)
    rejections = list(batch.rejections)
    if batch.new_attributes:
        store_schema_additions(session, "item" if batch.kind == "items" else "user", batch.new_attributes)
    if batch.kind == "items":
        counts = items_repo.upsert(session, batch.rows, track_seen=track_seen)
        if track_seen:
            items_repo.add_seen(session, batch.rejected_ids)
        changed = counts.inserted + counts.updated
        summary.inserted, summary.updated, summary.enqueued = counts.inserted, counts.updated, changed
        summary.unchanged = len(batch.rows) - changed
    elif batch.kind == "users":
        ucounts = users_repo.upsert(session, batch.rows)
        changed = ucounts.inserted + ucounts.updated
        summary.inserted, summary.updated, summary.enqueued = ucounts.inserted, ucounts.updated, changed
        summary.unchanged = len(batch.rows) - changed
    else:
        create = isinstance(options, InteractionOptions) and options.create_missing_items
        icounts = interactions_repo.insert(
            session,
            batch.payload if batch.payload is not None else batch.rows,
            create_missing_items=create,
            empty_text_hash=EMPTY_TEXT_HASH,
        )
        for line, item in icounts.unknown_items:
            rejection = Rejection(
                batch.source,
                batch.line_of(line) if batch.line_of is not None else line,
                "item_id",
                f"unknown item {item!r}: load the item first, or ask the load to create missing items",
            )
            if batch.on_error == "abort":
                raise RecordRejectedError(rejection)
            rejections.append(rejection)
        summary.inserted = icounts.inserted
        summary.unchanged = batch.staged_rows - len(icounts.unknown_items) - icounts.inserted
        summary.users_created = icounts.users_created
        summary.items_created = icounts.items_created
        summary.enqueued = icounts.users_enqueued
    rejections.sort(key=lambda r: r.line)
    summary.rejected = len(rejections)
    summary.rejections = rejections
    return summary


def store_schema_additions(session: Session, entity: Entity, additions: Mapping[str, AttrType]) -> None:
    conflicts = schema_repo.add(session, entity, additions)
    if conflicts:
        name, stored = next(iter(conflicts.items()))
        raise ValidationError(
            f"attribute {name!r} was declared as {stored} by another load meanwhile (this load read it as "
            f"{additions[name]}); run the load again",
            path=name,
        )


def _ingest(
    session: Session,
    kind: Kind,
    rows: Iterable[Row],
    options: RecordOptions,
    *,
    source: str,
    on_error: OnError,
    batch_size: int,
    track_seen: bool = False,
    max_attributes: int = DEFAULT_MAX_ATTRIBUTES,
) -> Summary:
    summary = Summary(kind)
    schema = load_schema(session, kind, options, max_attributes)
    events = EventCounter()
    for chunk in batched(rows, batch_size):
        batch = prepare(kind, chunk, options, source=source, on_error=on_error, schema=schema, events=events)
        summary.add(write(session, batch, options, track_seen=track_seen))
    return summary


def ingest_items(
    session: Session,
    rows: Iterable[Row],
    options: ItemOptions,
    *,
    source: str = "input",
    on_error: OnError = "skip",
    batch_size: int = DEFAULT_BATCH_SIZE,
    track_seen: bool = False,
    max_attributes: int = DEFAULT_MAX_ATTRIBUTES,
) -> Summary:
    """Validate and upsert items by external id (see :func:`write`), in the caller's transaction. The
    attributes are checked against the item schema (new ones are added while it has room)."""
    return _ingest(
        session, "items", rows, options, source=source, on_error=on_error, batch_size=batch_size,
        track_seen=track_seen, max_attributes=max_attributes,
    )  # fmt: skip


def ingest_users(
    session: Session,
    rows: Iterable[Row],
    options: UserOptions,
    *,
    source: str = "input",
    on_error: OnError = "skip",
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_attributes: int = DEFAULT_MAX_ATTRIBUTES,
) -> Summary:
    """Validate and upsert users by external id (see :func:`write`), in the caller's transaction."""
    return _ingest(
        session, "users", rows, options, source=source, on_error=on_error, batch_size=batch_size,
        max_attributes=max_attributes,
    )  # fmt: skip


def ingest_interactions(
    session: Session,
    rows: Iterable[Row],
    options: InteractionOptions,
    *,
    source: str = "input",
    on_error: OnError = "skip",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Summary:
    """Validate and insert interactions (see :func:`write`), in the caller's transaction."""
    return _ingest(
        session, "interactions", rows, options, source=source, on_error=on_error, batch_size=batch_size
    )


def start_prune_tracking(session: Session) -> None:
    """Start remembering the item ids read on this connection (for :func:`prune_items`)."""
    items_repo.reset_seen(session)


def prune_items(session: Session) -> int:
    """Deactivate active items not read since :func:`start_prune_tracking` on the same connection, and
    enqueue each; returns how many. Call only after every file of the full catalog was read."""
    return items_repo.prune_unseen(session)


def delete_items(session: Session, external_ids: Sequence[str]) -> DeleteResult:
    """Delete items and their interactions; enqueue ("item", id, "delete") and a refresh of every user
    whose history lost an interaction."""
    deleted, users = items_repo.delete(session, external_ids)
    found = set(deleted)
    unknown = [e for e in dict.fromkeys(external_ids) if e not in found]
    return DeleteResult(sorted(found), unknown, users)


def delete_users(session: Session, external_ids: Sequence[str]) -> DeleteResult:
    """Delete users and their interactions; enqueue ("user", id, "delete") for each (right to be
    forgotten: the vector goes through the outbox)."""
    found = set(users_repo.delete(session, external_ids))
    unknown = [e for e in dict.fromkeys(external_ids) if e not in found]
    return DeleteResult(sorted(found), unknown)
