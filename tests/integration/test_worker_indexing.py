"""The worker's payload indexes: created in the background while a batch embeds, always before the batch
writes its points, and created again before writing when the background attempt failed (real Postgres, the
real embedded Qdrant engine)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session, sessionmaker
from sync_support import CountingEmbedder, add_items, catalog, indexed_fields, outbox_count

from nearrec.config import Settings
from nearrec.embedding.base import Vectors
from nearrec.errors import StoreUnavailableError
from nearrec.filters import FieldType
from nearrec.postgres.models import OutboxRow
from nearrec.sync.collections import attribute_types
from nearrec.sync.worker import SyncWorker
from nearrec.vectors.base import VectorStore
from nearrec.vectors.edge import EdgeVectorStore

ITEMS = "nearrec_items"
ALL_INDEXES = {"external_id", "active", "genre", "year", "price", "new"}


class RecordingStore:
    """The real embedded store, recording its items index creations and point writes in order; an items
    index creation can be made to wait until the embedder has started (``gate``) or to fail (``failures``)."""

    def __init__(self, inner: VectorStore) -> None:
        self.inner = inner
        self.events: list[str] = []
        self.gate: threading.Event | None = None
        self.waited_for_embedding: list[bool] = []
        self.failures = 0

    def ensure_index(self, name: str, field: str, type: FieldType) -> None:
        if not name.startswith(ITEMS):  # the users collection's index is made with the collection
            self.inner.ensure_index(name, field, type)
            return
        if self.gate is not None:
            self.waited_for_embedding.append(self.gate.wait(timeout=5))
        if self.failures > 0:
            self.failures -= 1
            raise StoreUnavailableError("index creation failed (injected)")
        self.inner.ensure_index(name, field, type)
        self.events.append(f"index {field}")

    def upsert(self, name: str, points: Sequence[Any]) -> None:
        self.events.append("upsert")
        self.inner.upsert(name, points)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class SignallingEmbedder(CountingEmbedder):
    """Sets ``started`` when it begins to embed."""

    def __init__(self) -> None:
        super().__init__(64)
        self.started = threading.Event()

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.started.set()
        return super().embed(texts)


@pytest.fixture
def store(db: Engine, settings: Settings) -> Iterator[RecordingStore]:
    settings.embedding_model = "hashing:64"
    inner = EdgeVectorStore(settings.data_dir / "vectors")
    yield RecordingStore(inner)
    inner.close()


def test_indexes_are_created_while_the_batch_embeds_and_before_its_points(
    sessions: sessionmaker[Session], settings: Settings, store: RecordingStore
) -> None:
    embedder = SignallingEmbedder()
    store.gate = embedder.started  # an index creation proceeds only once the embedding has started
    add_items(sessions, catalog(20))
    report = SyncWorker(sessions, store, embedder, settings).drain()  # type: ignore[arg-type]
    assert report.items.embedded == 20 and report.failed == 0
    # every index creation ran while the batch embedded (had they run first, the gate would have timed out)
    assert store.waited_for_embedding and all(store.waited_for_embedding)
    assert store.events.index("upsert") > max(i for i, e in enumerate(store.events) if e.startswith("index"))
    assert indexed_fields(store.inner, ITEMS) >= ALL_INDEXES
    assert attribute_types(store.inner, ITEMS) == {
        "genre": FieldType.KEYWORD,
        "year": FieldType.INTEGER,
        "price": FieldType.FLOAT,
        "new": FieldType.BOOL,
    }


def test_a_failed_background_index_creation_is_done_again_before_writing(
    sessions: sessionmaker[Session], settings: Settings, store: RecordingStore
) -> None:
    store.failures = 1  # the background job's first index creation fails
    add_items(sessions, catalog(10))
    report = SyncWorker(sessions, store, CountingEmbedder(64), settings).drain()  # type: ignore[arg-type]
    assert report.items.embedded == 10 and report.failed == 0 and outbox_count(sessions) == 0
    assert indexed_fields(store.inner, ITEMS) >= ALL_INDEXES
    assert set(attribute_types(store.inner, ITEMS) or {}) == {"genre", "year", "price", "new"}


def test_a_store_still_failing_fails_the_batch_and_the_retry_indexes(
    sessions: sessionmaker[Session], settings: Settings, store: RecordingStore
) -> None:
    store.failures = 1_000_000  # index creation fails in the background and before writing
    add_items(sessions, catalog(5))
    worker = SyncWorker(sessions, store, CountingEmbedder(64), settings, retry_base_seconds=0.01)  # type: ignore[arg-type]
    report = worker.drain(wait_horizon=0)
    assert report.failed >= 5 and outbox_count(sessions) == 5 and store.inner.count(ITEMS) == 0
    store.failures = 0
    report = worker.drain()  # the rows are retried: indexes first, then points
    assert report.items.embedded == 5 and outbox_count(sessions) == 0 and store.inner.count(ITEMS) == 5
    assert indexed_fields(store.inner, ITEMS) >= ALL_INDEXES


def test_prepare_then_an_empty_drain_leaves_the_collection_indexed(
    sessions: sessionmaker[Session], settings: Settings, store: RecordingStore
) -> None:
    add_items(sessions, catalog(3))
    with sessions.begin() as s:  # the schema is declared, but nothing is left to sync
        s.execute(delete(OutboxRow))
    worker = SyncWorker(sessions, store, CountingEmbedder(64), settings)  # type: ignore[arg-type]
    worker.prepare()
    report = worker.drain()
    assert report.rows == 0
    assert indexed_fields(store.inner, ITEMS) >= ALL_INDEXES  # drain waited for the background job
