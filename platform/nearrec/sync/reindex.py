"""``nearrec reindex``: rebuild both collections with the configured embedding model, then swap the aliases.

Readers and writers use the aliases ``<prefix>items`` / ``<prefix>users`` throughout, so queries keep
working on the old collections until the swap. Steps:

1. create ``<prefix>items_<ts>`` and ``<prefix>users_<ts>`` (new model id in their metadata, payload indexes);
2. embed every item with text into the new items collection (streamed from Postgres in chunks, with the
   other named vectors, e.g. collaborative ones, copied from the old collection);
3. compute every user vector into the new users collection from the new item vectors;
4. with the workers held (no batch runs from here to the swap), compare the new collections with Postgres and
   enqueue (and commit) any difference: changes that workers applied to the old collections while the
   rebuild ran; changes made from here on stay pending too;
5. point the aliases at the new collections (each swap is atomic), drop the old collections, let the workers
   go: they apply the pending rows to the new collections. Every item whose new point is not current has a
   pending outbox row from the swap on, which the query service keeps out of its answers.

Each step works in the caller's transaction; the ``nearrec reindex`` command (:mod:`nearrec.cli.reindex_cmd`)
runs one transaction per step and per chunk of :data:`CHUNK` entities.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nearrec.config import Settings
from nearrec.embedding.base import Embedder
from nearrec.filters import FieldType
from nearrec.model.cf import META_CF
from nearrec.model.user_vector import UserVectorParams
from nearrec.postgres.models import Item, User
from nearrec.sync.check import check_stores, repair
from nearrec.sync.collections import (
    ItemSchema,
    item_sparse_vectors,
    item_vectors,
    physical_name,
    user_vectors,
)
from nearrec.sync.items import ItemSyncResult, sync_items
from nearrec.sync.users import UserSyncResult, sync_users
from nearrec.vectors.base import VectorStore
from nearrec.vectors.payload import ACTIVE, EXTERNAL_ID, META_DIM, META_MODEL, TEXT_VECTOR

log = logging.getLogger(__name__)
CHUNK = 1024
"""Items or users per transaction of a rebuild."""


@dataclass
class ReindexReport:
    items_collection: str
    users_collection: str
    dropped: list[str] = field(default_factory=list)
    items: ItemSyncResult = field(default_factory=ItemSyncResult)
    users: UserSyncResult = field(default_factory=UserSyncResult)
    requeued: int = 0


@dataclass
class Rebuild:
    """A rebuild in progress: the new collections being filled and the ones they replace."""

    items_alias: str
    users_alias: str
    old_items: str | None
    old_users: str | None
    other_vectors: list[str]  # named vectors of the old items collection copied over (e.g. "cf")
    schema: ItemSchema
    params: UserVectorParams
    report: ReindexReport

    @property
    def new_items(self) -> str:
        return self.report.items_collection

    @property
    def new_users(self) -> str:
        return self.report.users_collection


def start(session: Session, store: VectorStore, embedder: Embedder, settings: Settings) -> Rebuild:
    """Step 1: create the new collections (model id in their metadata, payload indexes)."""
    items_alias, users_alias = settings.items_collection, settings.users_collection
    stamp = _stamp(store, items_alias, users_alias)
    report = ReindexReport(physical_name(items_alias, stamp), physical_name(users_alias, stamp))
    old_items = _current(store, items_alias)
    other: dict[str, int] = {}
    sparse = list(item_sparse_vectors())
    meta: dict[str, Any] = {META_MODEL: embedder.model_id, META_DIM: embedder.dim}
    if old_items is not None:  # collaborative vectors and the model record that reads them carry over
        other = {k: v for k, v in store.vector_sizes(old_items).items() if k != TEXT_VECTOR}
        sparse = sorted({*sparse, *store.sparse_vectors(old_items)})
        if META_CF in (old_meta := store.get_metadata(old_items)):
            meta[META_CF] = old_meta[META_CF]
    store.ensure_collection(report.items_collection, {**item_vectors(embedder.dim), **other}, sparse=sparse)
    store.ensure_collection(report.users_collection, user_vectors(embedder.dim))
    rebuild = Rebuild(
        items_alias,
        users_alias,
        old_items,
        _current(store, users_alias),
        [*other, *sparse],
        ItemSchema(),
        UserVectorParams.from_settings(settings),
        report,
    )
    try:
        for name in (rebuild.new_items, rebuild.new_users):
            store.set_metadata(
                name,
                meta
                if name == rebuild.new_items
                else {META_MODEL: meta[META_MODEL], META_DIM: meta[META_DIM]},
            )
            store.ensure_index(name, EXTERNAL_ID, FieldType.KEYWORD)
        store.ensure_index(rebuild.new_items, ACTIVE, FieldType.BOOL)
        rebuild.schema = ItemSchema.load(session)
        rebuild.schema.ensure_indexes(store, rebuild.new_items)
    except BaseException:
        abandon(store, rebuild)
        raise
    return rebuild


def item_ids(session: Session) -> list[int]:
    return [int(i) for i in session.scalars(select(Item.id).order_by(Item.id))]


def user_ids(session: Session) -> list[int]:
    return [int(i) for i in session.scalars(select(User.id).order_by(User.id))]


def rebuild_items(
    session: Session, store: VectorStore, embedder: Embedder, rebuild: Rebuild, ids: Sequence[int]
) -> None:
    """Step 2, for one chunk: embed the items into the new collection, with their other named vectors."""
    result = sync_items(session, store, embedder, rebuild.new_items, rebuild.schema, ids, force_embed=True)
    if rebuild.other_vectors and rebuild.old_items is not None:
        _copy_vectors(store, rebuild.old_items, rebuild.new_items, ids, rebuild.other_vectors)
    rebuild.report.items.add(result)


def rebuild_users(
    session: Session, store: VectorStore, embedder: Embedder, rebuild: Rebuild, ids: Sequence[int]
) -> None:
    """Step 3, for one chunk: compute the user vectors from the new item vectors."""
    result = sync_users(
        session, store, embedder, rebuild.new_items, rebuild.new_users, rebuild.params, ids, force=True
    )
    rebuild.report.users.add(result)


def abandon(store: VectorStore, rebuild: Rebuild) -> None:
    """Drop the new collections (the rebuild failed); the aliases still point at the old ones."""
    store.delete_collection(rebuild.new_items)
    store.delete_collection(rebuild.new_users)


def swap(store: VectorStore, rebuild: Rebuild, *, keep_old: bool) -> None:
    """Step 5: point the aliases at the new collections (each swap is atomic), drop the old ones."""
    for alias, old, new in (
        (rebuild.items_alias, rebuild.old_items, rebuild.new_items),
        (rebuild.users_alias, rebuild.old_users, rebuild.new_users),
    ):
        if old == alias:  # a plain collection named like the alias (never made by nearrec): replace it
            store.delete_collection(old)
        store.set_alias(alias, new)
        if old is not None and old != alias and not keep_old:
            store.delete_collection(old)
            rebuild.report.dropped.append(old)
        log.info("alias %s -> %s", alias, new)


def finish(
    session: Session, store: VectorStore, embedder: Embedder, settings: Settings, rebuild: Rebuild
) -> None:
    """Step 4, before the swap, while the workers are held (:func:`nearrec.postgres.sync_repo.hold_workers`):
    compare the new collections with Postgres and enqueue any difference (changes that workers applied to
    the old collections while the rebuild ran). Committed before the swap, so from the swap on every item
    whose new point is not current has a pending outbox row, as the query service requires."""
    names = (rebuild.new_items, rebuild.new_users)
    check = check_stores(session, store, settings, embedder.model_id, names)
    if not check.ok:
        rebuild.report.requeued = repair(session, check)


def chunks(ids: Sequence[int], size: int = CHUNK) -> Iterator[Sequence[int]]:
    for begin in range(0, len(ids), size):
        yield ids[begin : begin + size]


def _current(store: VectorStore, alias: str) -> str | None:
    """The physical collection behind ``alias`` (the alias itself for a plain collection), or None."""
    target = store.resolve_alias(alias)
    if target is not None:
        return target
    return alias if store.collection_exists(alias) else None


def _stamp(store: VectorStore, *aliases: str) -> str:
    """A timestamp suffix no existing collection uses yet."""
    existing = set(store.list_collections())
    now = int(time.time())
    while True:
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now))
        if not any(physical_name(a, stamp) in existing for a in aliases):
            return stamp
        now += 1


def _copy_vectors(store: VectorStore, old: str, new: str, ids: Sequence[int], names: Sequence[str]) -> None:
    """Copy the named vectors ``names`` of ``ids`` from the old collection to points of the new one."""
    present = {h.id for h in store.retrieve(new, ids)}
    vectors = {
        h.id: {k: v for k, v in h.all_vectors().items() if k in names}
        for h in store.retrieve(old, [i for i in ids if i in present], with_vectors=True)
    }
    vectors = {i: v for i, v in vectors.items() if v}
    if vectors:
        store.update_vectors(new, vectors)
