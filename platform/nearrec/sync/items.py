"""Bringing item points in line with Postgres for a set of item ids (one worker batch, or a reindex chunk)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from nearrec.embedding.base import Embedder
from nearrec.postgres import sync_repo
from nearrec.postgres.sync_repo import ItemState
from nearrec.sync.collections import ItemSchema
from nearrec.vectors.base import AnyVector, PointRecord, VectorLike, VectorStore
from nearrec.vectors.payload import CONTENT_HASH, TEXT_VECTOR


@dataclass
class ItemSyncResult:
    embedded: int = 0  # points whose text was (re-)embedded
    rewritten: int = 0  # points rewritten with their old vector (payload changed)
    unchanged: int = 0
    deleted: int = 0  # points removed (item deleted, or without text)

    def add(self, other: ItemSyncResult) -> None:
        self.embedded += other.embedded
        self.rewritten += other.rewritten
        self.unchanged += other.unchanged
        self.deleted += other.deleted


def has_text(item: ItemState) -> bool:
    return bool(item.text and item.text.strip())


def sync_items(
    session: Session,
    store: VectorStore,
    embedder: Embedder,
    collection: str,
    schema: ItemSchema,
    item_ids: Sequence[int],
    *,
    force_embed: bool = False,
) -> ItemSyncResult:
    """Make the points of ``item_ids`` equal to the items' current rows.

    A deleted item, or one without text, loses its point. An inactive item keeps its point with
    ``active = 0`` (its vector still describes the users who interacted with it; queries filter on
    ``active``). A text is embedded only when its content hash differs from the point's (or with
    ``force_embed``); identical texts in one call are embedded once. Writes wait for the store."""
    result = ItemSyncResult()
    if not item_ids:
        return result
    states = {s.id: s for s in sync_repo.load_items(session, item_ids) if has_text(s)}
    gone = [i for i in item_ids if i not in states]
    schema.ensure_indexes(store, collection)
    existing = {h.id: h.payload for h in store.retrieve(collection, list(states))} if states else {}
    plan = _plan(states, existing, schema, force_embed)
    result.unchanged = plan.unchanged
    points = _points(store, embedder, collection, plan, existing, result)
    if points:
        store.upsert(collection, points)
    if gone:
        store.delete(collection, gone)
        result.deleted = len(gone)
    return result


@dataclass
class _Plan:
    to_embed: list[ItemState] = field(default_factory=list)  # text changed (or forced): embed
    to_rewrite: list[ItemState] = field(default_factory=list)  # only the payload changed: keep the vector
    payloads: dict[int, dict[str, Any]] = field(default_factory=dict)
    unchanged: int = 0


def _plan(
    states: dict[int, ItemState], existing: dict[int, dict[str, Any]], schema: ItemSchema, force_embed: bool
) -> _Plan:
    """Compare each item with its point: embed, rewrite the payload only, or leave it."""
    plan = _Plan()
    for item_id, item in states.items():
        payload = schema.payload(
            item.external_id, item.content_hash, item.active, item.attributes, item.title
        )
        plan.payloads[item_id] = payload
        old = existing.get(item_id)
        if force_embed or old is None or old.get(CONTENT_HASH) != item.content_hash:
            plan.to_embed.append(item)
        elif old != payload:
            plan.to_rewrite.append(item)
        else:
            plan.unchanged += 1
    return plan


def _points(
    store: VectorStore,
    embedder: Embedder,
    collection: str,
    plan: _Plan,
    existing: dict[int, dict[str, Any]],
    result: ItemSyncResult,
) -> list[PointRecord]:
    """The points to write: new text vectors for ``to_embed``, old vectors for ``to_rewrite``; other named
    vectors (e.g. collaborative ones) survive either."""
    keep_others = (set(store.vector_sizes(collection)) | set(store.sparse_vectors(collection))) - {
        TEXT_VECTOR
    }
    need_old = [i.id for i in plan.to_rewrite] + (
        [i.id for i in plan.to_embed if i.id in existing] if keep_others else []
    )
    old_vectors = {h.id: h.all_vectors() for h in store.retrieve(collection, need_old, with_vectors=True)}
    vectors = _embed_texts(embedder, plan.to_embed)
    points: list[PointRecord] = []
    for item in plan.to_embed:
        named: dict[str, AnyVector] = {
            k: v for k, v in old_vectors.get(item.id, {}).items() if k in keep_others
        }
        named[TEXT_VECTOR] = vectors[item.content_hash]
        points.append(PointRecord(item.id, named, plan.payloads[item.id]))
    for item in plan.to_rewrite:
        named = dict(old_vectors.get(item.id, {}))
        if TEXT_VECTOR not in named:  # vanished meanwhile: embed it after all
            named[TEXT_VECTOR] = embedder.embed([item.text or ""])[0]
            result.embedded += 1
        else:
            result.rewritten += 1
        points.append(PointRecord(item.id, named, plan.payloads[item.id]))
    result.embedded += len(plan.to_embed)
    return points


def _embed_texts(embedder: Embedder, items: Sequence[ItemState]) -> dict[str, VectorLike]:
    """Content hash -> vector; identical texts are embedded once."""
    texts: dict[str, str] = {}
    for item in items:
        texts.setdefault(item.content_hash, item.text or "")
    if not texts:
        return {}
    return dict(zip(texts, embedder.embed(list(texts.values())), strict=True))
