"""Comparing the vector store with Postgres (``nearrec sync check``) and re-enqueueing what differs.

Items: every item with text must have a point whose ``content_hash``, ``active`` flag and payload (attributes,
title) match its row (points written before the payload held titles show as payload drift); no other point may exist. Users: a user with a profile or a usable history must have
a point whose ``content_hash`` matches (see :mod:`nearrec.sync.users`); no other point may exist. The
collections must hold vectors of the configured embedding model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from nearrec.config import Settings
from nearrec.model.user_vector import UserVectorParams, params_fingerprint
from nearrec.postgres import outbox, sync_repo
from nearrec.sync.collections import ItemSchema
from nearrec.sync.items import has_text
from nearrec.sync.users import profile_text, state_hash
from nearrec.vectors.base import CollectionNotFoundError, VectorStore
from nearrec.vectors.payload import ACTIVE, CONTENT_HASH, META_MODEL


@dataclass
class Drift:
    """Point ids that differ, by reason. ``extra`` points must go; all the others must be rewritten."""

    missing: list[int] = field(default_factory=list)
    extra: list[int] = field(default_factory=list)
    stale: list[int] = field(default_factory=list)  # content hash differs
    active: list[int] = field(default_factory=list)  # items: active flag differs
    payload: list[int] = field(default_factory=list)  # items: attributes differ
    points: int = 0  # points in the store
    expected: int = 0  # points Postgres calls for

    @property
    def total(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.stale) + len(self.active) + len(self.payload)

    def to_upsert(self) -> list[int]:
        return sorted({*self.missing, *self.stale, *self.active, *self.payload})

    def as_dict(self, sample: int = 10) -> dict[str, Any]:
        out: dict[str, Any] = {"points": self.points, "expected": self.expected}
        for name in ("missing", "extra", "stale", "active", "payload"):
            ids: list[int] = getattr(self, name)
            out[name] = {"count": len(ids), "ids": ids[:sample]}
        return out


@dataclass
class CheckReport:
    items: Drift
    users: Drift
    problems: list[str] = field(default_factory=list)  # model mismatch, missing collection

    @property
    def ok(self) -> bool:
        return not self.problems and self.items.total == 0 and self.users.total == 0


def check_stores(
    session: Session,
    store: VectorStore,
    settings: Settings,
    model_id: str | None,
    names: tuple[str, str] | None = None,
) -> CheckReport:
    """Compare both collections (``names``: items, users; default: the configured aliases) with Postgres
    (reads everything once; memory ~ number of points), in the caller's transaction."""
    report = CheckReport(Drift(), Drift())
    items, users = names or (settings.items_collection, settings.users_collection)
    for name in (items, users):
        # A missing collection is no problem in itself: its points count as missing (the worker creates it).
        if (
            model_id is not None
            and store.collection_exists(name)
            and store.get_metadata(name).get(META_MODEL) != model_id
        ):
            have = store.get_metadata(name).get(META_MODEL)
            report.problems.append(
                f"collection {name!r} holds vectors of model {have!r}, {model_id!r} is configured: "
                "run `nearrec reindex`"
            )
    _check_items(session, store, items, report.items)
    _check_users(session, store, settings, users, report.users)
    return report


def _points(store: VectorStore, name: str) -> dict[int, dict[str, Any]]:
    try:
        return {hit.id: hit.payload for hit in store.scroll(name, batch=2000)}
    except CollectionNotFoundError:
        return {}


def _check_items(session: Session, store: VectorStore, name: str, drift: Drift) -> None:
    points = _points(store, name)
    drift.points = len(points)
    schema = ItemSchema.load(session)
    seen: set[int] = set()
    for item in sync_repo.iter_items(session):
        if not has_text(item):
            continue
        drift.expected += 1
        seen.add(item.id)
        payload = points.get(item.id)
        if payload is None:
            drift.missing.append(item.id)
        elif payload.get(CONTENT_HASH) != item.content_hash:
            drift.stale.append(item.id)
        elif payload.get(ACTIVE) != (1 if item.active else 0):
            drift.active.append(item.id)
        elif payload != schema.payload(
            item.external_id, item.content_hash, item.active, item.attributes, item.title
        ):
            drift.payload.append(item.id)
    drift.extra = sorted(set(points) - seen)


def _check_users(session: Session, store: VectorStore, settings: Settings, name: str, drift: Drift) -> None:
    params = UserVectorParams.from_settings(settings)
    fingerprint = params_fingerprint(params)
    ignored = [kind for kind, weight in params.interaction_weights.items() if weight == 0]
    points = _points(store, name)
    drift.points = len(points)
    seen: set[int] = set()
    for user, useful_history in sync_repo.iter_user_states(session, ignored):
        if profile_text(user) is None and not useful_history:
            continue
        drift.expected += 1
        seen.add(user.id)
        payload = points.get(user.id)
        if payload is None:
            drift.missing.append(user.id)
        elif payload.get(CONTENT_HASH) != state_hash(user, fingerprint):
            drift.stale.append(user.id)
    drift.extra = sorted(set(points) - seen)


def repair(session: Session, report: CheckReport) -> int:
    """Enqueue every difference of ``report`` for the workers, in the caller's transaction; returns the
    number of rows added."""
    added = outbox.enqueue(session, "item", report.items.to_upsert())
    added += outbox.enqueue(session, "item", report.items.extra, op="delete")
    added += outbox.enqueue(session, "user", report.users.to_upsert())
    added += outbox.enqueue(session, "user", report.users.extra, op="delete")
    return added
