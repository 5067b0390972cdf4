"""Test data, loaded the way production loads it: through :mod:`nearrec.ingest.service` (what ``nearrec ingest``
and the HTTP API call), one transaction per call. Nothing here writes a catalog row or an outbox row by hand,
so every test sees the rows *and* the vector work that real ingestion leaves behind.

Items take their embedded text from the ``text`` field alone (``nearrec ingest --text-columns text``), so a
test can compare a stored vector with ``embedder.embed([row["text"]])``.

Also here: :class:`Stack`, a real Postgres + embedded vector store + sync worker + query service, shared by
the query and training tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from nearrec.config import Settings
from nearrec.embedding import HashingEmbedder
from nearrec.ingest import service as ingest
from nearrec.ingest.records import InteractionOptions, ItemOptions, UserOptions
from nearrec.postgres import items as items_repo
from nearrec.postgres.engine import transaction
from nearrec.postgres.models import Item, User
from nearrec.query.service import QueryService
from nearrec.sync.worker import SyncWorker
from nearrec.vectors.edge import EdgeVectorStore

ITEM_OPTIONS = ItemOptions(text_columns=("text",))
USER_OPTIONS = UserOptions()
INTERACTION_OPTIONS = InteractionOptions()
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
_ITEM_KEYS = {"external_id", "id", "title", "text", "attributes"}
_USER_KEYS = {"external_id", "id", "profile", "attributes"}

Event = tuple[str, str, float | None]  # (item external id, type, value)


def _record(row: Mapping[str, Any], allowed: set[str]) -> dict[str, Any]:
    unknown = set(row) - allowed
    if unknown:
        raise TypeError(f"unexpected keys {sorted(unknown)}: a factory row has {sorted(allowed)}")
    external_id = row.get("external_id", row.get("id"))
    fields = {k: v for k, v in row.items() if k not in ("external_id", "id", "attributes")}
    return {**row.get("attributes", {}), **fields, "id": external_id}


def _ids(session: Session, model: type[Item] | type[User], external_ids: Sequence[str]) -> dict[str, int]:
    found = dict(
        session.execute(select(model.external_id, model.id).where(model.external_id.in_(external_ids))).all()
    )
    return {e: int(found[e]) for e in external_ids}


def load_items(sessions: sessionmaker[Session], rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Upsert items (``external_id`` or ``id``, ``text``, optional ``title`` and ``attributes``) through the
    ingest service; returns external id -> ``items.id`` in the order given. Invalid rows raise."""
    records = [_record(r, _ITEM_KEYS) for r in rows]
    with transaction(sessions) as session:
        ingest.ingest_items(
            session, ingest.numbered(records), ITEM_OPTIONS, source="factory", on_error="abort"
        )
        return _ids(session, Item, [r["id"] for r in records])


def load_users(sessions: sessionmaker[Session], rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Upsert users (``external_id`` or ``id``, optional ``profile`` and ``attributes``); external id -> id."""
    records = [_record(r, _USER_KEYS) for r in rows]
    with transaction(sessions) as session:
        ingest.ingest_users(
            session, ingest.numbered(records), USER_OPTIONS, source="factory", on_error="abort"
        )
        return _ids(session, User, [r["id"] for r in records])


def add_user(sessions: sessionmaker[Session], external_id: str, profile: str | None = None) -> int:
    """One user; returns ``users.id``."""
    return load_users(sessions, [{"external_id": external_id, "profile": profile}])[external_id]


def load_interactions(sessions: sessionmaker[Session], events: Iterable[Mapping[str, Any]]) -> ingest.Summary:
    """Insert interaction records (``user_id``, ``item_id`` as external ids, optional ``type``, ``value``,
    ``timestamp``, ``event_id``) as ``nearrec ingest interactions`` does: unknown users are created, each
    user with new interactions is enqueued once."""
    with transaction(sessions) as session:
        return ingest.ingest_interactions(
            session, ingest.numbered(events), INTERACTION_OPTIONS, source="factory", on_error="abort"
        )


def history(
    sessions: sessionmaker[Session], user: str, events: Sequence[Event], start: datetime | None = None
) -> ingest.Summary:
    """``(item, type, value)`` events of one user, oldest first, one minute apart from ``start``."""
    start = start or DEFAULT_START
    return load_interactions(
        sessions,
        [
            {
                "user_id": user,
                "item_id": item,
                "type": kind,
                "value": value,
                "timestamp": start + timedelta(minutes=n),
            }
            for n, (item, kind, value) in enumerate(events)
        ],
    )


def deactivate_items(sessions: sessionmaker[Session], external_ids: Sequence[str]) -> int:
    """Deactivate items the way ``nearrec ingest --prune`` does: a full catalog that lacks them was read.
    Returns how many were deactivated (each one is enqueued)."""
    gone = set(external_ids)
    with transaction(sessions) as session:
        present = [e for e in session.scalars(select(Item.external_id).where(Item.active)) if e not in gone]
        ingest.start_prune_tracking(session)
        items_repo.add_seen(session, present)  # what reading the rest of the catalog file records
        return ingest.prune_items(session)


def delete_items(sessions: sessionmaker[Session], external_ids: Sequence[str]) -> ingest.DeleteResult:
    """Delete items as ``nearrec delete items`` does (interactions too; users refreshed through the outbox)."""
    with transaction(sessions) as session:
        return ingest.delete_items(session, external_ids)


def delete_users(sessions: sessionmaker[Session], external_ids: Sequence[str]) -> ingest.DeleteResult:
    """Delete users as ``nearrec delete users`` does (their history too, through the outbox)."""
    with transaction(sessions) as session:
        return ingest.delete_users(session, external_ids)


def item_rows(sessions: sessionmaker[Session], ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The stored items as factory rows (``external_id``, ``title``, ``text``, ``attributes``) by ``items.id``."""
    with sessions() as session:
        rows = session.scalars(select(Item).where(Item.id.in_(ids))).all()
        return {
            r.id: {"external_id": r.external_id, "title": r.title, "text": r.text, "attributes": r.attributes}
            for r in rows
        }


def external_ids(
    sessions: sessionmaker[Session], model: type[Item] | type[User], ids: Sequence[int]
) -> list[str]:
    """External ids of ``ids`` (``items.id`` or ``users.id``), in the same order."""
    with sessions() as session:
        found = dict(session.execute(select(model.id, model.external_id).where(model.id.in_(ids))).all())
    return [found[i] for i in ids]


# --- a whole stack for the query and training tests ----------------------------------------------------------

GENRES = ["drama", "comedy", "horror", "scifi"]
GENRE_WORDS = {
    "drama": "family tears love loss courtroom letters",
    "comedy": "jokes laughter wedding mishap prank silly",
    "horror": "ghost haunted blood night scream cellar",
    "scifi": "spaceship robot alien planet laser galaxy",
}


def genre_catalog(n_per_genre: int = 25) -> list[dict[str, Any]]:
    """Items ``<genre>-<i>`` whose text is the genre's words, with typed attributes for every filter."""
    rows = []
    for g, genre in enumerate(GENRES):
        for i in range(n_per_genre):
            rows.append(
                {
                    "external_id": f"{genre}-{i}",
                    "title": f"{genre.title()} {i}",
                    "text": f"{GENRE_WORDS[genre]} story number{i}",
                    "attributes": {
                        "genre": genre,
                        "year": 1990 + i,
                        "price": round(5 + i * 0.5 + g, 2),
                        "in_stock": i % 2 == 0,
                        "tags": [genre, "even" if i % 2 == 0 else "odd"],
                    },
                }
            )
    return rows


def ids(recs: Sequence[Any]) -> list[str]:
    """The item ids of a list of recommendations."""
    return [r.item_id for r in recs]


class Stack:
    """A real Postgres (the test database), a real embedded vector store and a real sync worker; data goes
    in through the ingest service."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings, root: Path) -> None:
        self.sessions = sessions
        self.settings = settings
        self.store = EdgeVectorStore(root)
        self.embedder = HashingEmbedder(64)
        self.worker = SyncWorker(sessions, self.store, self.embedder, settings)
        self.service = QueryService(sessions, self.store, settings, embedder=lambda: self.embedder)

    def add_items(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        return load_items(self.sessions, rows)

    def add_user(self, external_id: str, profile: str | None = None) -> int:
        return add_user(self.sessions, external_id, profile)

    def interact(
        self, user: int, items: list[int], kind: str = "view", start: datetime | None = None
    ) -> None:
        [name] = external_ids(self.sessions, User, [user])
        events = [(item, kind, None) for item in external_ids(self.sessions, Item, items)]
        history(self.sessions, name, events, start)

    def sync(self) -> None:
        self.worker.drain()
