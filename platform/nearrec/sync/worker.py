"""The outbox worker: claims pending rows, brings the vector store in line with Postgres, removes the rows.

One batch is one Postgres transaction:

1. claim up to ``batch_size`` available rows with ``FOR UPDATE SKIP LOCKED`` (other workers skip them);
2. take a non-blocking advisory lock per entity; entities locked by another worker are deferred for a moment,
   so an entity is never processed by two workers at once (and never embedded twice for one content hash);
3. lock the other pending rows of the same entities (coalescing), read the entities' current rows, embed
   changed texts, upsert / delete points (every write waits for the store), store each user's cf fold-in
   in Postgres (:mod:`nearrec.sync.cf_users`);
4. delete the claimed rows and commit.

A crash anywhere before the commit leaves the rows in place; the next attempt finds the work already done
(content hashes match) or redoes it: delivery is at least once and every step is idempotent. A failure
counts an attempt on the rows (``attempts``, ``last_error``, exponential backoff through ``available_at``)
and parks them (``failed_at``) after ``worker_max_attempts``. When a batch of several entities fails for
another reason than an unavailable store, its entities are retried one by one so one bad entity cannot hold
back the others.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from nearrec.config import Settings
from nearrec.embedding.base import Embedder
from nearrec.errors import ModelMismatchError, StoreUnavailableError
from nearrec.model.user_vector import UserVectorParams
from nearrec.postgres import outbox, sync_repo
from nearrec.postgres.engine import transaction
from nearrec.postgres.notify import OutboxListener
from nearrec.postgres.sync_repo import Claim
from nearrec.query.retrieval import Retriever
from nearrec.sync.cf_users import refresh_cf_vectors
from nearrec.sync.collections import ItemSchema, check_model, ensure_collections
from nearrec.sync.index import IndexBuilder
from nearrec.sync.items import ItemSyncResult, sync_items
from nearrec.sync.users import UserSyncResult, sync_users
from nearrec.vectors.base import VectorStore

log = logging.getLogger(__name__)

DEFER_SECONDS = 0.5
"""Delay of rows whose entity another worker is processing."""
MAX_ERROR_CHARS = 1000
STOP_CHECK_SECONDS = 0.25
"""How often an idle worker waiting for a notification checks whether it must stop."""


@dataclass
class BatchReport:
    rows: int = 0  # outbox rows handled (removed or failed), coalesced rows included
    deferred: int = 0
    failed: int = 0
    items: ItemSyncResult = field(default_factory=ItemSyncResult)
    users: UserSyncResult = field(default_factory=UserSyncResult)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, other: BatchReport) -> None:
        self.rows += other.rows
        self.deferred += other.deferred
        self.failed += other.failed
        self.items.add(other.items)
        self.users.add(other.users)
        self.errors += other.errors
        self.seconds += other.seconds


class SyncWorker:
    """Drains the outbox into one vector store. One instance per thread; instances may share the store and
    the embedder. Nothing happens until :meth:`prepare` (called by the first batch)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: VectorStore,
        embedder: Embedder,
        settings: Settings,
        *,
        batch_size: int | None = None,
        retry_base_seconds: float = 1.0,
        retry_max_seconds: float = 300.0,
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.batch_size = batch_size or settings.worker_batch_size
        self.retry_base_seconds = retry_base_seconds
        self.retry_max_seconds = retry_max_seconds
        self.items_collection = settings.items_collection
        self.users_collection = settings.users_collection
        self.params = UserVectorParams.from_settings(settings)
        self.retriever = Retriever(store, settings)  # the query path's fold-in, for the stored cf vectors
        self._schema: ItemSchema | None = None
        self.index_builder = IndexBuilder(
            store,
            [self.items_collection, self.users_collection],
            settings.index_build_min_points,
            settings.target_recall,
            queries_from={self.items_collection: self.users_collection},
        )

    # --- setup -------------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the collections if needed, check their model, learn the attribute types and index them."""
        with transaction(self.sessions) as session:
            ensure_collections(
                session,
                self.store,
                self.items_collection,
                self.users_collection,
                self.embedder.model_id,
                self.embedder.dim,
            )
        with transaction(self.sessions) as session:
            schema = ItemSchema.load(session)
        schema.ensure_indexes(self.store, self.items_collection)
        self._schema = schema

    @property
    def schema(self) -> ItemSchema:
        if self._schema is None:
            self.prepare()
        assert self._schema is not None
        return self._schema

    # --- one batch ---------------------------------------------------------------------------------------

    def run_batch(self) -> BatchReport:
        """Claim and process one batch; returns what happened (``rows == 0``: nothing was available)."""
        schema = self.schema
        started = time.perf_counter()
        report = BatchReport()
        with transaction(self.sessions) as session:
            sync_repo.wait_for_hold(session)  # a reindex swapping its collections in (see hold_workers)
            claims = sync_repo.claim(session, self.batch_size)
            if not claims:
                return report
            schema.refresh(session)  # attributes added or dropped since the last batch
            keys = list(dict.fromkeys((c.entity, c.entity_id) for c in claims))
            locked = sync_repo.lock_entities(session, keys)
            busy = [c.id for c in claims if (c.entity, c.entity_id) not in locked]
            sync_repo.defer(session, busy, DEFER_SECONDS)
            report.deferred = len(busy)
            mine = [c for c in claims if (c.entity, c.entity_id) in locked]
            groups = self._coalesce(session, mine)
            if any(entity == "user" for entity, _ in groups):
                outbox.claiming_users(session)  # before reading them: loads' batches in flight commit first
            if groups:
                self._process_groups(session, schema, groups, report)
        report.seconds = time.perf_counter() - started
        if report.rows:
            log.info(
                "batch: %d rows, %d embedded, %d users, %d deleted, %d failed in %.2fs",
                report.rows,
                report.items.embedded,
                report.users.computed,
                report.items.deleted + report.users.deleted,
                report.failed,
                report.seconds,
            )
        return report

    def _coalesce(self, session: Session, mine: Sequence[Claim]) -> dict[tuple[str, int], list[int]]:
        """Entity -> every outbox row id this batch removes for it (its claimed rows plus the entity's
        other rows that no one else holds)."""
        groups: dict[tuple[str, int], list[int]] = {}
        for c in mine:
            groups.setdefault((c.entity, c.entity_id), []).append(c.id)
        claimed = [c.id for c in mine]
        for entity in {c.entity for c in mine}:
            ids = [k[1] for k in groups if k[0] == entity]
            for extra in sync_repo.claim_more(session, entity, ids, claimed):
                groups[(extra.entity, extra.entity_id)].append(extra.id)
        return groups

    def _process_groups(
        self,
        session: Session,
        schema: ItemSchema,
        groups: dict[tuple[str, int], list[int]],
        report: BatchReport,
    ) -> None:
        try:
            with session.begin_nested():
                self._process(session, schema, list(groups), report)
            sync_repo.delete_rows(session, [i for ids in groups.values() for i in ids])
            report.rows += sum(len(ids) for ids in groups.values())
            return
        except ModelMismatchError:
            raise
        except Exception as exc:
            if len(groups) == 1 or _store_down(exc):
                self._fail(session, [i for ids in groups.values() for i in ids], exc, report)
                return
            log.warning("batch of %d entities failed (%s); retrying them one by one", len(groups), exc)
        entries = list(groups.items())
        for n, (key, ids) in enumerate(entries):
            try:
                with session.begin_nested():
                    self._process(session, schema, [key], report)
                sync_repo.delete_rows(session, ids)
                report.rows += len(ids)
            except ModelMismatchError:
                raise
            except Exception as exc:
                self._fail(session, ids, exc, report)
                if _store_down(exc):  # no point trying the others now
                    rest = [i for _, later in entries[n + 1 :] for i in later]
                    self._fail(session, rest, exc, report)
                    return

    def _process(
        self, session: Session, schema: ItemSchema, keys: Sequence[tuple[str, int]], report: BatchReport
    ) -> None:
        unknown = sorted({k[0] for k in keys} - {"item", "user"})
        if unknown:
            raise ValueError(f"unknown outbox entity kind(s): {', '.join(unknown)}")
        check_model(self.store, self.items_collection, self.embedder.model_id)
        check_model(self.store, self.users_collection, self.embedder.model_id)
        item_ids = sorted(i for e, i in keys if e == "item")
        user_ids = sorted(i for e, i in keys if e == "user")
        items = sync_items(session, self.store, self.embedder, self.items_collection, schema, item_ids)
        users = sync_users(
            session,
            self.store,
            self.embedder,
            self.items_collection,
            self.users_collection,
            self.params,
            user_ids,
        )
        users.cf_stored = refresh_cf_vectors(session, self.retriever, self.params, user_ids)
        report.items.add(items)
        report.users.add(users)

    def _fail(self, session: Session, ids: Sequence[int], exc: BaseException, report: BatchReport) -> None:
        if not ids:
            return
        message = describe_error(exc)
        sync_repo.record_failure(
            session,
            ids,
            message,
            self.settings.worker_max_attempts,
            self.retry_base_seconds,
            self.retry_max_seconds,
        )
        report.failed += len(ids)
        report.rows += len(ids)
        report.errors.append(message)
        log.warning("%d outbox rows failed: %s", len(ids), message)

    # --- loops -------------------------------------------------------------------------------------------

    def drain(
        self,
        stop: threading.Event | None = None,
        wait_horizon: float = 2.0,
        on_batch: Callable[[BatchReport], None] | None = None,
    ) -> BatchReport:
        """Process batches until no row is available; rows becoming available within ``wait_horizon``
        seconds (deferred, or retried soon) are waited for. Returns the totals."""
        total = BatchReport()
        while stop is None or not stop.is_set():
            batch = self.run_batch()
            total.add(batch)
            if on_batch is not None and batch.rows:
                on_batch(batch)
            if batch.rows or batch.deferred:
                continue
            with transaction(self.sessions) as session:
                wait = sync_repo.seconds_until_next(session)
            if wait is None or wait > wait_horizon:
                break
            time.sleep(max(wait, 0.05))
        return total

    def run(
        self,
        stop: threading.Event,
        listen_url: str | None = None,
        on_batch: Callable[[BatchReport], None] | None = None,
    ) -> None:
        """Process batches until ``stop`` is set; when idle, wait for a NOTIFY (if ``listen_url``) or poll.
        ``on_batch`` sees every batch that did something (metrics).

        Transient failures (Postgres or the store unreachable) are logged and retried with backoff; a model
        mismatch stops the worker."""
        listener: OutboxListener | None = None
        pause = 0.0
        poll = self.settings.worker_poll_seconds
        try:
            while not stop.is_set():
                try:
                    if listen_url is not None and listener is None:
                        listener = OutboxListener(listen_url)
                    batch = self.run_batch()
                    pause = 0.0
                    if batch.rows or batch.deferred:
                        if on_batch is not None:
                            on_batch(batch)
                        continue
                    self.index_builder.maybe_start()  # idle: the backlog is synced
                    self._idle(stop, listener, poll)
                except ModelMismatchError:
                    raise
                except Exception as exc:
                    pause = min(max(pause * 2, 1.0), 30.0)
                    log.error("worker error (retrying in %.0fs): %s", pause, describe_error(exc))
                    if listener is not None:
                        listener.close()
                        listener = None
                    stop.wait(pause)
        finally:
            if listener is not None:
                listener.close()

    @staticmethod
    def _idle(stop: threading.Event, listener: OutboxListener | None, seconds: float) -> None:
        """Wait up to ``seconds`` for a notification, returning early when ``stop`` is set."""
        deadline = time.monotonic() + seconds
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if listener is None:
                stop.wait(left)
                return
            if listener.wait(min(left, STOP_CHECK_SECONDS)):
                return


def _store_down(exc: BaseException) -> bool:
    return isinstance(exc, StoreUnavailableError | DBAPIError)


_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)
_KEY_VALUE = re.compile(r"\b(password|passwd|api[_\-]?key|token|secret)(\s*[=:]\s*)(\S+)", re.IGNORECASE)


def describe_error(exc: BaseException) -> str:
    """``Type: message`` with passwords and keys masked, at most ``MAX_ERROR_CHARS`` characters."""
    text = f"{type(exc).__name__}: {exc}"
    text = _URL_PASSWORD.sub(r"\1***@", text)
    text = _KEY_VALUE.sub(r"\1\2***", text)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."
