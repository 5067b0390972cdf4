"""Helpers for the sync tests: catalog changes through the ingest service (see ``tests/factories.py``), with
``items.id`` / ``users.id`` in and out as the worker tests want them, and wrappers around real components (a
counting embedder, a vector store that fails for a while)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from qdrant_client import QdrantClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

import factories
from nearrec.config import Settings
from nearrec.embedding import HashingEmbedder
from nearrec.embedding.base import Vectors
from nearrec.errors import StoreUnavailableError
from nearrec.ingest.values import content_hash
from nearrec.postgres.models import Item, OutboxRow, User
from nearrec.postgres.outbox import enqueue
from nearrec.vectors.base import VectorStore
from nearrec.vectors.edge import EdgeVectorStore
from nearrec.vectors.server import ServerVectorStore

WORDS = ["space", "robot", "love", "war", "ghost", "comedy", "family", "ocean", "king", "detective", "music"]


def item_text(n: int, salt: str = "") -> str:
    return f"{WORDS[n % len(WORDS)]} {WORDS[(n * 7) % len(WORDS)]} story {n} {salt}".strip()


def add_items(sessions: sessionmaker[Session], rows: Sequence[dict[str, Any]]) -> list[int]:
    """Ingest items (external_id, text, title, attributes); returns their ids in the order given."""
    return list(factories.load_items(sessions, rows).values())


def catalog(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "external_id": f"i{k}",
            "title": f"Item {k}",
            "text": item_text(k),
            "attributes": {"genre": WORDS[k % 3], "year": 1990 + k % 20, "price": 1.5 * k, "new": k % 2 == 0},
        }
        for k in range(start, start + n)
    ]


def update_item(sessions: sessionmaker[Session], item_id: int, **values: Any) -> None:
    """Change an item the way production does: re-ingest it with new ``text``/``title``/``attributes``,
    deactivate it (``active=False``: a pruning catalog load) or reactivate it (``active=True``: re-ingest).

    A blank ``text`` is the one state ingestion cannot produce (it rejects a record with nothing to embed);
    it stands for a row written by another program, so it is written directly, with its outbox row."""
    row = factories.item_rows(sessions, [item_id])[item_id]
    active = values.pop("active", None)
    if "text" in values and not (values["text"] or "").strip():
        with sessions.begin() as s:
            s.execute(
                update(Item)
                .where(Item.id == item_id)
                .values(text=values["text"], content_hash=content_hash(values["text"]))
            )
            enqueue(s, "item", [item_id])
        return
    if values or active:
        factories.load_items(sessions, [{**row, **values}])
    if active is False:
        factories.deactivate_items(sessions, [row["external_id"]])


def delete_item(sessions: sessionmaker[Session], item_id: int) -> None:
    [external_id] = factories.external_ids(sessions, Item, [item_id])
    factories.delete_items(sessions, [external_id])


def add_user(sessions: sessionmaker[Session], external_id: str, profile: str | None = None) -> int:
    return factories.add_user(sessions, external_id, profile)


def interact(
    sessions: sessionmaker[Session],
    user_id: int,
    events: Sequence[tuple[int, str, float | None]],
    start: datetime | None = None,
) -> None:
    """Ingest ``(item_id, type, value)`` interactions, oldest first, one minute apart (ids are ``items.id``
    and ``users.id``); the user is enqueued once."""
    [user] = factories.external_ids(sessions, User, [user_id])
    items = factories.external_ids(sessions, Item, [item for item, _, _ in events])
    factories.history(
        sessions, user, [(name, t, v) for name, (_, t, v) in zip(items, events, strict=True)], start
    )


def outbox_rows(sessions: sessionmaker[Session]) -> list[OutboxRow]:
    with sessions() as s:
        return list(s.scalars(select(OutboxRow).order_by(OutboxRow.id)))


def outbox_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(OutboxRow)) or 0)  # type: ignore[no-any-return,unused-ignore]


class CountingEmbedder(HashingEmbedder):
    """The hashing embedder, counting how often each text was embedded (thread safe)."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__(dim)
        self.texts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> Vectors:
        with self._lock:
            self.texts.update(texts)
        return super().embed(texts)


class FlakyStore:
    """A real vector store whose writes and reads fail while ``down`` is set (an outage, injected)."""

    def __init__(self, inner: VectorStore, fail_after: int | None = None) -> None:
        self.inner = inner
        self.down = False
        self.failures = 0
        self.fail_after = fail_after  # go down after this many more successful calls

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr) or name in ("close",):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.fail_after is not None:
                if self.fail_after <= 0:
                    self.down, self.fail_after = True, None
                else:
                    self.fail_after -= 1
            if self.down:
                self.failures += 1
                raise StoreUnavailableError("vector store unreachable (injected outage, api_key=s3cret)")
            return attr(*args, **kwargs)

        return call


def open_store(kind: str, settings: Settings) -> VectorStore:
    """Both real in-process engines: qdrant-edge (the embedded default) and qdrant-client's local mode."""
    if kind == "edge":
        return EdgeVectorStore(settings.data_dir / "vectors")
    return ServerVectorStore(QdrantClient(":memory:"))


def indexed_fields(store: VectorStore, name: str) -> set[str]:
    if isinstance(store, EdgeVectorStore):
        return set(store._col(name).shard.info().payload_schema)
    assert isinstance(store, ServerVectorStore)
    return set(store.client.get_collection(name).payload_schema)
