"""The collaborative ("cf") vector of a user or a session, folded in at query time.

The user's recent history (``CF_HISTORY`` interactions, from the same SQL round trip as the seen ids) is
folded into a cf vector from the items' stored "cf" vectors (:func:`nearrec.model.cf.fold_in_user`), so the
vector is always fresh: no retraining is needed for new interactions. The user cf vectors of the training
users are not stored at all; only the items' vectors and the model record (:class:`CFMeta`) are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nearrec.model.cf import CF_VECTOR, CFMeta, cf_values, fold_in_user
from nearrec.model.fusion import augment_user, item_factors_from_stored
from nearrec.model.user_vector import UserVectorParams
from nearrec.postgres.query_repo import TimedEvent
from nearrec.query.retrieval import Retriever
from nearrec.vectors.base import VectorStore

CF_HISTORY = 200
"""Most recent interactions folded into the query-time cf vector (older ones weigh < 1e-6 at half-life 10)."""

FloatVector = np.ndarray[Any, np.dtype[np.float32]]


def load_cf_meta(store: VectorStore, items: str) -> CFMeta | None:
    """The trained model's record in the items collection; None before `nearrec train`, or when the
    collection was rebuilt since (e.g. by a reindex) and has no "cf" vectors of that size."""
    meta = CFMeta.from_metadata(store.get_metadata(items))
    if meta is not None and store.vector_sizes(items).get(CF_VECTOR) != meta.dim:
        return None
    return meta


def cf_user_vector(
    retriever: Retriever, events: Sequence[TimedEvent], meta: CFMeta, params: UserVectorParams
) -> FloatVector | None:
    """Fold a history (most recent first) into a cf query vector ``[u, 0]``; None if no item is known."""
    stored = retriever.vectors(list(dict.fromkeys(e.item_id for e in events)), using=CF_VECTOR)
    known = [e for e in events if e.item_id in stored]
    if not known:
        return None
    # Rows in internal id order, so timestamp ties break as in training (larger item id is newer).
    order = sorted(stored)
    rows = {item: n for n, item in enumerate(order)}
    factors = item_factors_from_stored(np.stack([stored[i] for i in order]), meta.scale)
    values = cf_values(
        [e.type for e in known], [np.nan if e.value is None else e.value for e in known], params
    )
    user = fold_in_user(
        factors, [rows[e.item_id] for e in known], values, [e.timestamp for e in known], meta.config()
    )
    if not np.any(user):
        return None
    return augment_user(user)


def session_timeline(liked: Sequence[int], disliked: Sequence[int]) -> list[TimedEvent]:
    """An anonymous session as a history, most recent first: liked items in order (the last one newest),
    dislikes as dislikes."""
    timeline = [TimedEvent(i, "like", None, float(n)) for n, i in enumerate(liked)]
    timeline += [TimedEvent(i, "dislike", None, float(len(liked))) for i in disliked]
    return list(reversed(timeline))


__all__ = ["CF_HISTORY", "cf_user_vector", "load_cf_meta", "session_timeline"]
