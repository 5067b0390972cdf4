"""The result of the last `nearrec sync check`, kept in the items collection's metadata (key
``last_check``) so that every API replica (and the dashboard) sees the same one. A reindex starts a new
collection, and with it "never run" again."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from nearrec.errors import NearrecError
from nearrec.sync.check import CheckReport
from nearrec.vectors.base import VectorStore

log = logging.getLogger(__name__)

META_LAST_CHECK = "last_check"


def summary(report: CheckReport, enqueued: int = 0) -> dict[str, Any]:
    """A small JSON document: when, ok, problems, and per collection the counts of each kind of drift."""
    out: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "ok": report.ok,
        "problems": list(report.problems),
        "enqueued": enqueued,
    }
    for kind, drift in (("items", report.items), ("users", report.users)):
        out[kind] = {
            "points": drift.points,
            "expected": drift.expected,
            **{
                name: len(getattr(drift, name)) for name in ("missing", "extra", "stale", "active", "payload")
            },
        }
    return out


def record(store: VectorStore, collection: str, report: CheckReport, enqueued: int = 0) -> bool:
    """Store the summary on ``collection``; False (and a log line) when that is impossible, e.g. the
    collection does not exist yet. Recording is best effort: it never fails the check itself."""
    try:
        if not store.collection_exists(collection):
            return False
        store.set_metadata(collection, {META_LAST_CHECK: summary(report, enqueued)})
        return True
    except NearrecError as exc:
        log.warning("could not record the check result on %s: %s", collection, exc)
        return False


def last(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The recorded summary in a collection's metadata, or None."""
    found = metadata.get(META_LAST_CHECK)
    return found if isinstance(found, dict) else None
