"""Catalog ingestion: streaming file readers, record validation, bulk upsert into Postgres with the outbox.

Library entry points (the caller owns the transaction)::

    from nearrec.ingest import ItemOptions, ingest_items, numbered
    summary = ingest_items(session, numbered([record]), ItemOptions(), source="request", on_error="abort")

Whole files: :func:`nearrec.ingest.loader.load` (what ``nearrec ingest`` runs).
"""

from nearrec.ingest.readers import BadRow, ReadOptions, open_reader
from nearrec.ingest.records import (
    InteractionOptions,
    ItemOptions,
    RecordRejectedError,
    Rejection,
    UserOptions,
)
from nearrec.ingest.service import (
    DeleteResult,
    delete_items,
    delete_users,
    ingest_interactions,
    ingest_items,
    ingest_users,
    numbered,
    prune_items,
    start_prune_tracking,
)
from nearrec.ingest.summary import Summary

__all__ = [
    "BadRow",
    "DeleteResult",
    "InteractionOptions",
    "ItemOptions",
    "ReadOptions",
    "RecordRejectedError",
    "Rejection",
    "Summary",
    "UserOptions",
    "delete_items",
    "delete_users",
    "ingest_interactions",
    "ingest_items",
    "ingest_users",
    "numbered",
    "open_reader",
    "prune_items",
    "start_prune_tracking",
]
