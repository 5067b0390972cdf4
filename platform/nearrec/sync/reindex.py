"""``nearrec reindex``: rebuild both collections with the configured embedding model, then swap the aliases.

Readers and writers use the aliases ``<prefix>items`` / ``<prefix>users`` throughout, so queries keep
working on the old collections until the swap. Steps:

1. create ``<prefix>items_<ts>`` and ``<prefix>users_<ts>`` (new model id in their metadata, payload indexes);
2. embed every item with text into the new items collection (streamed from Postgres in chunks, with the
   other named vectors, e.g. collaborative ones, copied from the old collection);
3. compute every user vector into the new users collection from the new item vectors;
4. point the aliases at the new collections (each swap is atomic) and drop the old collections;
5. compare the new collections with Postgres and enqueue any difference (changes that workers applied to the
   old collections while the rebuild ran), for the workers to apply.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from nearrec.config import Settings
from nearrec.embedding.base import Embedder
from nearrec.filters import FieldType
from nearrec.model.user_vector import UserVectorParams
from nearrec.postgres.engine import transaction
from nearrec.postgres.models import Item, User
from nearrec.sync.check import check_stores, repair
from nearrec.sync.collections import ItemSchema, item_vectors, physical_name, user_vectors
from nearrec.sync.items import ItemSyncResult, sync_items
from nearrec.sync.users import UserSyncResult, sync_users
from nearrec.vectors.base import VectorStore
from nearrec.vectors.payload import ACTIVE, EXTERNAL_ID, META_DIM, META_MODEL, TEXT_VECTOR

log = logging.getLogger(__name__)
Progress = Callable[[str, int], None]
"""Called with (phase, entities done in this step): phase is "items" or "users"."""


@dataclass
class ReindexReport:
    items_collection: str
    users_collection: str
    dropped: list[str] = field(default_factory=list)
    items: ItemSyncResult = field(default_factory=ItemSyncResult)
    users: UserSyncResult = field(default_factory=UserSyncResult)
    requeued: int = 0


def reindex(
    sessions: sessionmaker[Session],
    store: VectorStore,
    embedder: Embedder,
    settings: Settings,
    *,
    chunk: int = 1024,
    keep_old: bool = False,
    progress: Progress | None = None,
) -> ReindexReport:
    """Rebuild the items and users collections with ``embedder`` and swap them in (see the module doc)."""
    items_alias, users_alias = settings.items_collection, settings.users_collection
    stamp = _stamp(store, items_alias, users_alias)
    new_items, new_users = physical_name(items_alias, stamp), physical_name(users_alias, stamp)
    report = ReindexReport(new_items, new_users)
    old_items = _current(store, items_alias)
    old_users = _current(store, users_alias)

    other: dict[str, int] = {}
    if old_items is not None:
        other = {k: v for k, v in store.vector_sizes(old_items).items() if k != TEXT_VECTOR}
    meta = {META_MODEL: embedder.model_id, META_DIM: embedder.dim}
    store.ensure_collection(new_items, {**item_vectors(embedder.dim), **other})
    store.ensure_collection(new_users, user_vectors(embedder.dim))
    for name in (new_items, new_users):
        store.set_metadata(name, meta)
        store.ensure_index(name, EXTERNAL_ID, FieldType.KEYWORD)
    store.ensure_index(new_items, ACTIVE, FieldType.BOOL)

    try:
        with transaction(sessions) as session:
            schema = ItemSchema.load(session)
        schema.ensure_indexes(store, new_items)
        for ids in _chunks(sessions, select(Item.id).order_by(Item.id), chunk):
            with transaction(sessions) as session:
                result = sync_items(session, store, embedder, new_items, schema, ids, force_embed=True)
                if other and old_items is not None:
                    _copy_vectors(store, old_items, new_items, ids, list(other))
            report.items.add(result)
            if progress:
                progress("items", len(ids))
        params = UserVectorParams.from_settings(settings)
        for ids in _chunks(sessions, select(User.id).order_by(User.id), chunk):
            with transaction(sessions) as session:
                uresult = sync_users(session, store, embedder, new_items, new_users, params, ids, force=True)
            report.users.add(uresult)
            if progress:
                progress("users", len(ids))
    except BaseException:
        store.delete_collection(new_items)
        store.delete_collection(new_users)
        raise

    for alias, old, new in ((items_alias, old_items, new_items), (users_alias, old_users, new_users)):
        if old == alias:  # a plain collection named like the alias (never made by nearrec): replace it
            store.delete_collection(old)
        store.set_alias(alias, new)
        if old is not None and old != alias and not keep_old:
            store.delete_collection(old)
            report.dropped.append(old)
        log.info("alias %s -> %s", alias, new)

    check = check_stores(sessions, store, settings, embedder.model_id)
    if not check.ok:
        report.requeued = repair(sessions, check)
    return report


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


def _chunks(sessions: sessionmaker[Session], ids_query: Select[Any], size: int) -> Iterator[list[int]]:
    with transaction(sessions) as session:
        ids = [int(i) for i in session.scalars(ids_query)]
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _copy_vectors(store: VectorStore, old: str, new: str, ids: Sequence[int], names: Sequence[str]) -> None:
    """Copy the named vectors ``names`` of ``ids`` from the old collection to points of the new one."""
    present = {h.id for h in store.retrieve(new, ids)}
    vectors = {
        h.id: {k: v for k, v in (h.vector or {}).items() if k in names}
        for h in store.retrieve(old, [i for i in ids if i in present], with_vectors=True)
    }
    vectors = {i: v for i, v in vectors.items() if v}
    if vectors:
        store.update_vectors(new, vectors)
