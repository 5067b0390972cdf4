"""The collaborative ("cf") vector of a user or a session, folded in at query time.

The user's recent history (``CF_HISTORY`` interactions, from the same SQL round trip as the seen ids) is
turned into the model's query vector at query time, so it is always fresh: no retraining is needed for new
interactions. For an item-item model (EASE, item-kNN) the query is the weighted history itself as a sparse
vector; for the ridge model it is the fold-in of the items' stored factors. The user vectors of the training
users are not stored at all; only the items' vectors and the model record (:class:`CFMeta`) are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nearrec.model.cf import CFMeta, cf_values
from nearrec.model.ease import query_sparse_vector
from nearrec.model.fusion import augment_user, item_factors_from_stored
from nearrec.model.user_vector import UserVectorParams
from nearrec.model.weighting import base_weights, served_config
from nearrec.postgres.query_repo import TimedEvent
from nearrec.query.retrieval import Retriever
from nearrec.vectors.base import AnyVector, Sparse, VectorStore

CF_HISTORY = 200
"""Most recent interactions folded into the query-time cf vector (older ones weigh < 1e-6 at half-life 10)."""


def load_cf_meta(store: VectorStore, items: str) -> CFMeta | None:
    """The trained model's record in the items collection; None before `nearrec train`, or when the
    collection was rebuilt since without the model's vector (sparse, or dense of the recorded size)."""
    meta = CFMeta.from_metadata(store.get_metadata(items))
    if meta is None:
        return None
    if meta.sparse and meta.vector not in store.sparse_vectors(items):
        return None
    if not meta.sparse and store.vector_sizes(items).get(meta.vector) != meta.dim:
        return None
    return meta


def cf_user_vector(
    retriever: Retriever, events: Sequence[TimedEvent], meta: CFMeta, params: UserVectorParams
) -> AnyVector | None:
    """The model's query vector from a history (most recent first): the weighted history itself for
    item-item models (a sparse vector: its dot product with an item's stored column is the model's score),
    its fold-in ``[u, 0]`` for the ridge model. None if nothing is known."""
    if not events:
        return None
    config = served_config(meta)
    kinds = [e.type for e in events]
    values = [np.nan if e.value is None else e.value for e in events]
    weights = base_weights(kinds, cf_values(kinds, values, params) > 0, config).tolist()
    if meta.sparse:
        indices, vals = query_sparse_vector(recent_history(events, weights, config.half_life, config.history))
        return Sparse(indices, vals) if indices else None
    history = recent_history(events, weights, config.half_life, None)
    stored = retriever.model_vectors(list(history), meta.vector)
    known = sorted(i for i in history if i in stored)  # internal id order, as the training-time rows
    if not known:
        return None
    factors = item_factors_from_stored(np.stack([stored[i] for i in known]), meta.scale)
    user = np.fromiter((history[i] for i in known), np.float64, len(known)).astype(np.float32) @ factors
    if not np.any(user):
        return None
    return augment_user(user)


def recent_history(
    events: Sequence[TimedEvent], weights: Sequence[float], half_life: float | None, max_items: int | None
) -> dict[int, float]:
    """One user's row of :func:`~nearrec.model.ease.decayed_history` in plain Python (no sparse matrices
    per request): ``{item: weight * 0.5 ** (position_from_newest / half_life)}`` over the newest event of
    each item, zero-weight events left out of the positions, the ``max_items`` most recent items only.
    ``events`` are most recent first; ties in time go to the earlier one in that order (the later row)."""
    newest_first = sorted(range(len(events)), key=lambda n: (-events[n].timestamp, n))
    kept: dict[int, float] = {}
    for n in newest_first:
        item, weight = events[n].item_id, weights[n]
        if weight == 0 or item in kept:
            continue
        if max_items is not None and len(kept) >= max_items:
            break
        kept[item] = weight
    if half_life is None:
        return kept
    # The same numpy operations as the training-time matrix, so the values are bit for bit the same.
    decayed = np.fromiter(kept.values(), np.float64, len(kept)) * 0.5 ** (np.arange(len(kept)) / half_life)
    return dict(zip(kept, decayed.tolist(), strict=True))


def session_timeline(liked: Sequence[int], disliked: Sequence[int]) -> list[TimedEvent]:
    """An anonymous session as a history, most recent first: liked items in order (the last one newest),
    dislikes as dislikes."""
    timeline = [TimedEvent(i, "like", None, float(n)) for n, i in enumerate(liked)]
    timeline += [TimedEvent(i, "dislike", None, float(len(liked))) for i in disliked]
    return list(reversed(timeline))


__all__ = ["CF_HISTORY", "cf_user_vector", "load_cf_meta", "recent_history", "session_timeline"]
