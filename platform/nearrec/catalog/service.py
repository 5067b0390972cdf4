"""Catalog ingestion as a library: validate records, bulk-write them, enqueue vector work.

The same functions serve the CLI (whole files, in batches) and the HTTP API (single records)::

    with transaction(sessions) as session:
        summary = ingest_items(session, numbered([body]), ItemOptions(), source="request", on_error="abort")

They never commit: the caller owns the transaction. ``on_error="skip"`` records a :class:`Rejection` for a
bad record and writes the others; ``"abort"`` raises :class:`RecordRejectedError` at the first one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.orm import Session

from nearrec.catalog.readers import BadRow, Row, batched
from nearrec.catalog.records import (
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
from nearrec.catalog.values import EMPTY_TEXT_HASH, JsonValue
from nearrec.db import interactions as interactions_repo
from nearrec.db import items as items_repo
from nearrec.db import users as users_repo

OnError = Literal["skip", "abort"]
Kind = Literal["items", "users", "interactions"]
DEFAULT_BATCH_SIZE = 5000


@dataclass
class Summary:
    """What an ingestion did. ``read = inserted + updated + unchanged + rejected``; ``unchanged`` counts
    valid records that changed nothing (identical to what is stored, a repeated event id, or superseded
    by a later record with the same id in the same batch)."""

    kind: Kind
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    pruned: int = 0
    users_created: int = 0
    items_created: int = 0
    enqueued: int = 0
    seconds: float = 0.0
    rejections: list[Rejection] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def loaded(self) -> int:
        """Valid records handled (written or already up to date)."""
        return self.inserted + self.updated + self.unchanged

    @property
    def rows_per_second(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def add(self, other: Summary) -> None:
        """Add another summary's counts and rejections (the caller trims rejections it keeps)."""
        for name in ("read", "inserted", "updated", "unchanged", "rejected", "pruned", "users_created",
                     "items_created", "enqueued"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.rejections.extend(other.rejections)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "read": self.read,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
        }
        if self.kind == "items":
            out["pruned"] = self.pruned
        if self.kind == "interactions":
            out["users_created"] = self.users_created
            out["items_created"] = self.items_created
        out["enqueued"] = self.enqueued
        out["seconds"] = round(self.seconds, 3)
        out["rows_per_second"] = round(self.rows_per_second, 1)
        out["error"] = self.error
        return out


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
    return _JSON.encode(attributes)


class _Batch:
    """Rejections of one batch, reported in line order."""

    def __init__(self, summary: Summary, source: str, on_error: OnError) -> None:
        self.summary = summary
        self.source = source
        self.on_error = on_error
        self.rejections: list[Rejection] = []

    def reject(self, line: int, field_: str | None, reason: str, record_id: str | None = None) -> None:
        rejection = Rejection(self.source, line, field_, reason, record_id)
        if self.on_error == "abort":
            raise RecordRejectedError(rejection)
        self.rejections.append(rejection)

    def close(self) -> None:
        self.rejections.sort(key=lambda r: r.line)
        self.summary.rejected += len(self.rejections)
        self.summary.rejections.extend(self.rejections)


def _nul_field(attributes: Mapping[str, JsonValue], document: str) -> str | None:
    """The attribute holding a NUL character (Postgres text and JSONB cannot store one), if any."""
    if "\\u0000" not in document:
        return None
    return next((k for k, v in attributes.items() if "\\u0000" in _dumps({k: v})), "attributes")


def ingest_items(
    session: Session,
    rows: Iterable[Row],
    options: ItemOptions,
    *,
    source: str = "input",
    on_error: OnError = "skip",
    batch_size: int = DEFAULT_BATCH_SIZE,
    track_seen: bool = False,
) -> Summary:
    """Upsert items by external id. Identical items are untouched and enqueue nothing; each inserted,
    changed or reactivated item enqueues exactly one ("item", id, "upsert") outbox row.

    With ``track_seen`` (after :func:`start_prune_tracking`) every id read, including ids of rejected
    records, is remembered for :func:`prune_items`.
    """
    summary = Summary("items")
    for chunk in batched(rows, batch_size):
        batch = _Batch(summary, source, on_error)
        staged: list[items_repo.StagedItem] = []
        rejected_ids: list[str] = []
        for line, raw in chunk:
            try:
                if isinstance(raw, BadRow):
                    raise RowError(None, raw.reason)
                record = parse_item(raw, options)
                document = _dumps(record.attributes)
                bad = _nul_field(record.attributes, document)
                if bad is not None:
                    raise RowError(bad, "contains a NUL character", record.external_id)
            except RowError as exc:
                batch.reject(line, exc.field, exc.reason, exc.record_id)
                if exc.record_id is not None:
                    rejected_ids.append(exc.record_id)
                continue
            staged.append(
                (line, record.external_id, record.title, record.text, document, record.content_hash)
            )
        summary.read += len(chunk)
        counts = items_repo.upsert(session, staged, track_seen=track_seen)
        if track_seen:
            items_repo.add_seen(session, rejected_ids)
        summary.inserted += counts.inserted
        summary.updated += counts.updated
        summary.unchanged += len(staged) - counts.inserted - counts.updated
        summary.enqueued += counts.inserted + counts.updated
        batch.close()
    return summary


def start_prune_tracking(session: Session) -> None:
    """Start remembering the item ids read on this connection (for :func:`prune_items`)."""
    items_repo.reset_seen(session)


def prune_items(session: Session) -> int:
    """Deactivate active items not read since :func:`start_prune_tracking` on the same connection, and
    enqueue each; returns how many. Call only after every file of the full catalog was read."""
    return items_repo.prune_unseen(session)


def ingest_users(
    session: Session,
    rows: Iterable[Row],
    options: UserOptions,
    *,
    source: str = "input",
    on_error: OnError = "skip",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Summary:
    """Upsert users by external id (profile text and attributes); each inserted or changed user enqueues
    one ("user", id, "upsert") outbox row."""
    summary = Summary("users")
    for chunk in batched(rows, batch_size):
        batch = _Batch(summary, source, on_error)
        staged: list[users_repo.StagedUser] = []
        for line, raw in chunk:
            try:
                if isinstance(raw, BadRow):
                    raise RowError(None, raw.reason)
                record = parse_user(raw, options)
                document = _dumps(record.attributes)
                bad = _nul_field(record.attributes, document)
                if bad is not None:
                    raise RowError(bad, "contains a NUL character", record.external_id)
            except RowError as exc:
                batch.reject(line, exc.field, exc.reason, exc.record_id)
                continue
            staged.append((line, record.external_id, record.profile, document))
        summary.read += len(chunk)
        counts = users_repo.upsert(session, staged)
        summary.inserted += counts.inserted
        summary.updated += counts.updated
        summary.unchanged += len(staged) - counts.inserted - counts.updated
        summary.enqueued += counts.inserted + counts.updated
        batch.close()
    return summary


def ingest_interactions(
    session: Session,
    rows: Iterable[Row],
    options: InteractionOptions,
    *,
    source: str = "input",
    on_error: OnError = "skip",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Summary:
    """Insert interactions. Unknown users are created; unknown items are rejected, or created as inactive
    placeholders with ``options.create_missing_items``; a repeated event id is ignored (counted as
    unchanged). Each user with new interactions is enqueued once, coalesced with pending work."""
    summary = Summary("interactions")
    for chunk in batched(rows, batch_size):
        batch = _Batch(summary, source, on_error)
        staged: list[interactions_repo.StagedInteraction] = []
        for line, raw in chunk:
            try:
                if isinstance(raw, BadRow):
                    raise RowError(None, raw.reason)
                record = parse_interaction(raw, options)
            except RowError as exc:
                batch.reject(line, exc.field, exc.reason, exc.record_id)
                continue
            staged.append((line, *record))
        summary.read += len(chunk)
        counts = interactions_repo.insert(
            session,
            staged,
            create_missing_items=options.create_missing_items,
            empty_text_hash=EMPTY_TEXT_HASH,
        )
        for line, item in counts.unknown_items:
            batch.reject(
                line,
                "item_id",
                f"unknown item {item!r} (load the catalog first or pass --create-missing-items)",
            )
        summary.inserted += counts.inserted
        summary.unchanged += len(staged) - len(counts.unknown_items) - counts.inserted
        summary.users_created += counts.users_created
        summary.items_created += counts.items_created
        summary.enqueued += counts.users_enqueued
        batch.close()
    return summary


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
