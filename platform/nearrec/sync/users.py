"""Bringing user points in line with Postgres: the blended user vector of :mod:`nearrec.model.user_vector`.

A user point stores ``text`` (the user vector, comparable with item ``text`` vectors) and ``profile`` (the
profile embedding, reused while the profile is unchanged). Its payload holds ``content_hash``: a hash of
everything the vector was computed from (profile, interaction count and newest interaction id, and the
user-vector settings), so unchanged users are skipped and ``nearrec sync check`` can spot stale vectors.
Item vectors are read from the items collection in one call for the whole batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from nearrec.embedding.base import Embedder
from nearrec.model.user_vector import (
    UserVectorParams,
    build_user_vector,
    history_weights,
    params_fingerprint,
)
from nearrec.postgres import outbox, sync_repo
from nearrec.postgres.sync_repo import UserState
from nearrec.vectors.base import PointRecord, VectorLike, VectorStore
from nearrec.vectors.payload import (
    CONTENT_HASH,
    EXTERNAL_ID,
    INTERACTIONS,
    PROFILE_HASH,
    PROFILE_VECTOR,
    TEXT_VECTOR,
)

INCOMPLETE = "incomplete"
"""``content_hash`` of a user vector built while some of its history items had no vector yet."""
RETRY_INCOMPLETE_SECONDS = 1.0


@dataclass
class UserSyncResult:
    computed: int = 0  # user vectors (re)computed and written
    unchanged: int = 0
    deleted: int = 0  # points removed (user deleted, or nothing to build a vector from)
    profiles_embedded: int = 0
    incomplete: int = 0  # written without some history items (not synced yet), requeued
    cf_stored: int = 0  # cf fold-ins stored in Postgres (nearrec.sync.cf_users)

    def add(self, other: UserSyncResult) -> None:
        self.cf_stored += other.cf_stored
        self.computed += other.computed
        self.unchanged += other.unchanged
        self.deleted += other.deleted
        self.profiles_embedded += other.profiles_embedded
        self.incomplete += other.incomplete


def profile_text(user: UserState) -> str | None:
    return user.profile if user.profile and user.profile.strip() else None


def profile_hash(text: str | None) -> str:
    return hashlib.sha256((text or "").encode()).hexdigest()


def state_hash(user: UserState, fingerprint: str) -> str:
    """What a user vector depends on, hashed: compared with the point's ``content_hash``."""
    doc = f"{fingerprint}|{profile_hash(profile_text(user))}|{user.interactions}|{user.last_interaction_id}"
    return hashlib.sha256(doc.encode()).hexdigest()


History = dict[int, list[tuple[int, str, float | None]]]
"""User id -> its recent interactions as (item id, type, value), newest first."""


def sync_users(
    session: Session,
    store: VectorStore,
    embedder: Embedder,
    items_collection: str,
    users_collection: str,
    params: UserVectorParams,
    user_ids: Sequence[int],
    *,
    force: bool = False,
) -> UserSyncResult:
    """Recompute the vectors of ``user_ids`` whose inputs changed (all of them with ``force``)."""
    result = UserSyncResult()
    if not user_ids:
        return result
    fingerprint = params_fingerprint(params)
    users = {u.id: u for u in sync_repo.load_users(session, user_ids)}
    gone = [i for i in user_ids if i not in users]
    existing = {h.id: h.payload for h in store.retrieve(users_collection, list(users))} if users else {}
    hashes = {uid: state_hash(u, fingerprint) for uid, u in users.items()}
    todo = [u for uid, u in users.items() if force or existing.get(uid, {}).get(CONTENT_HASH) != hashes[uid]]
    result.unchanged = len(users) - len(todo)

    history = sync_repo.recent_interactions(
        session, [u.id for u in todo if u.interactions], params.history_limit
    )
    item_vecs = _item_vectors(store, items_collection, history)
    profiles = _profile_vectors(store, embedder, users_collection, todo, existing, result, force)
    incomplete = _requeue_incomplete(session, history, item_vecs, result)
    points: list[PointRecord] = []
    for user in todo:
        vector = _user_vector(
            user, history.get(user.id, []), item_vecs, profiles.get(user.id), params, embedder.dim
        )
        if vector is None:
            gone.append(user.id)
            continue
        content_hash = INCOMPLETE if user.id in incomplete else hashes[user.id]
        points.append(_user_point(user, vector, profiles.get(user.id), content_hash))
    if points:
        store.upsert(users_collection, points)
        result.computed = len(points)
    if gone:
        store.delete(users_collection, gone)
        result.deleted = len(gone)
    return result


def _item_vectors(
    store: VectorStore, items_collection: str, history: History
) -> dict[int, npt.NDArray[np.float32]]:
    """The text vectors of every item in ``history`` that has one (one call for the whole batch)."""
    wanted = sorted({item_id for events in history.values() for item_id, _, _ in events})
    return {
        h.id: np.asarray(h.vector[TEXT_VECTOR], dtype=np.float32)
        for h in store.retrieve(items_collection, wanted, with_vectors=True)
        if h.vector and TEXT_VECTOR in h.vector
    }


def _requeue_incomplete(
    session: Session, history: History, item_vecs: dict[int, npt.NDArray[np.float32]], result: UserSyncResult
) -> set[int]:
    """Users whose history holds items still waiting for their first vector: their vector is written with
    what there is now, marked incomplete (its hash will not match) and re-enqueued to come back once the
    items are synced. Returns them."""
    missing = sorted({i for events in history.values() for i, _, _ in events if i not in item_vecs})
    waiting = sync_repo.pending_entities(session, "item", missing)
    incomplete = {uid for uid, events in history.items() if any(i in waiting for i, _, _ in events)}
    if incomplete:
        outbox.enqueue(session, "user", sorted(incomplete), delay_seconds=RETRY_INCOMPLETE_SECONDS)
        result.incomplete = len(incomplete)
    return incomplete


def _user_vector(
    user: UserState,
    events: Sequence[tuple[int, str, float | None]],
    item_vecs: dict[int, npt.NDArray[np.float32]],
    profile: npt.NDArray[np.float32] | None,
    params: UserVectorParams,
    dim: int,
) -> npt.NDArray[np.float32] | None:
    """The blended vector of one user (None: nothing to build it from)."""
    weights = history_weights([(kind, value) for _, kind, value in events], params)
    keep = [i for i, (item_id, _, _) in enumerate(events) if item_id in item_vecs]
    vecs = np.stack([item_vecs[events[i][0]] for i in keep]) if keep else np.zeros((0, dim), dtype=np.float32)
    return build_user_vector(profile, vecs, weights[keep], params.profile_weight)


def _user_point(
    user: UserState,
    vector: npt.NDArray[np.float32],
    profile: npt.NDArray[np.float32] | None,
    content_hash: str,
) -> PointRecord:
    named: dict[str, VectorLike] = {TEXT_VECTOR: vector}
    if profile is not None:
        named[PROFILE_VECTOR] = profile
    payload = {
        EXTERNAL_ID: user.external_id,
        CONTENT_HASH: content_hash,
        PROFILE_HASH: profile_hash(profile_text(user)),
        INTERACTIONS: user.interactions,
    }
    return PointRecord(user.id, named, payload)


def _profile_vectors(
    store: VectorStore,
    embedder: Embedder,
    users_collection: str,
    todo: Sequence[UserState],
    existing: dict[int, dict[str, object]],
    result: UserSyncResult,
    force: bool,
) -> dict[int, npt.NDArray[np.float32]]:
    """Profile embeddings of ``todo`` users: reused from their point when the profile is unchanged."""
    with_profile = [u for u in todo if profile_text(u) is not None]
    reuse = [
        u.id
        for u in with_profile
        if not force and existing.get(u.id, {}).get(PROFILE_HASH) == profile_hash(profile_text(u))
    ]
    out: dict[int, npt.NDArray[np.float32]] = {}
    for hit in store.retrieve(users_collection, reuse, with_vectors=True):
        if hit.vector and PROFILE_VECTOR in hit.vector:
            out[hit.id] = np.asarray(hit.vector[PROFILE_VECTOR], dtype=np.float32)
    missing = [u for u in with_profile if u.id not in out]
    if missing:
        texts = [profile_text(u) or "" for u in missing]
        for user, vec in zip(missing, embedder.embed(texts), strict=True):
            out[user.id] = vec
        result.profiles_embedded = len(missing)
    return out
