"""Helpers for the sync tests: write catalog rows the way ingestion does (row + outbox row, one transaction),
and wrappers around real components (a counting embedder, a vector store that fails for a while)."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from qdrant_client import QdrantClient
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from nearrec.config import Settings
from nearrec.embedding import HashingEmbedder
from nearrec.embedding.base import Vectors
from nearrec.errors import StoreUnavailableError
from nearrec.postgres.models import Interaction, Item, OutboxRow, User
from nearrec.postgres.outbox import enqueue
from nearrec.vectors.base import VectorStore
from nearrec.vectors.edge import EdgeVectorStore
from nearrec.vectors.server import ServerVectorStore

WORDS = ["space", "robot", "love", "war", "ghost", "comedy", "family", "ocean", "king", "detective", "music"]


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def item_text(n: int, salt: str = "") -> str:
    return f"{WORDS[n % len(WORDS)]} {WORDS[(n * 7) % len(WORDS)]} story {n} {salt}".strip()


def add_items(sessions: sessionmaker[Session], rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert items (external_id, text, attributes, active) and enqueue them; returns their ids."""
    prepared = []
    for r in rows:
        row = {"attributes": {}, "active": True, **r}
        row["content_hash"] = content_hash(row.get("text") or "")
        prepared.append(row)
    with sessions.begin() as s:
        ids = list(s.scalars(insert(Item).returning(Item.id), prepared).all())
        enqueue(s, "item", ids)
    return ids


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
    if "text" in values:
        values["content_hash"] = content_hash(values["text"] or "")
    with sessions.begin() as s:
        s.execute(update(Item).where(Item.id == item_id).values(**values))
        enqueue(s, "item", [item_id])


def delete_item(sessions: sessionmaker[Session], item_id: int) -> None:
    with sessions.begin() as s:
        s.execute(delete(Item).where(Item.id == item_id))
        enqueue(s, "item", [item_id], op="delete")


def add_user(sessions: sessionmaker[Session], external_id: str, profile: str | None = None) -> int:
    with sessions.begin() as s:
        uid = s.scalar(insert(User).values(external_id=external_id, profile=profile).returning(User.id))
        assert uid is not None
        enqueue(s, "user", [uid])
    return int(uid)


def interact(
    sessions: sessionmaker[Session],
    user_id: int,
    events: Sequence[tuple[int, str, float | None]],
    start: datetime | None = None,
) -> None:
    """Add ``(item_id, type, value)`` interactions, oldest first, one minute apart; enqueue the user."""
    start = start or datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        {"user_id": user_id, "item_id": i, "type": t, "value": v, "occurred_at": start + timedelta(minutes=n)}
        for n, (i, t, v) in enumerate(events)
    ]
    with sessions.begin() as s:
        s.execute(insert(Interaction), rows)
        enqueue(s, "user", [user_id])


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
