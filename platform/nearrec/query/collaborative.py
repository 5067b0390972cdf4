"""The collaborative ("cf") vector of a user or a session: the fold-in of their recent history.

The user's recent history (``CF_HISTORY`` interactions) is turned into the model's query vector, so it is
always fresh: no retraining is needed for new interactions. For an item-item model (EASE, item-kNN) the query
is the weighted history itself as a sparse vector; for the ridge model it is the fold-in of the items' stored
factors. The worker folds each user in when it refreshes them and stores the vector in Postgres with its
:func:`cf_tag` (``users.cf_vector``, :mod:`nearrec.sync.cf_users`); the query service reads it in its one
statement instead of the events while it is exactly what this fold-in would give now (the tag is the serving
model's and the user has no outbox row, :data:`nearrec.postgres.query_repo.USER_WITH_HISTORY`), else it reads
the events and folds them in at query time. Training users' vectors are not kept by the model; only the
items' vectors and the model record (:class:`CFMeta`) are.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from nearrec.model.cf import CFMeta, cf_values
from nearrec.model.ease import query_sparse_vector
from nearrec.model.fusion import augment_user, item_factors_from_stored
from nearrec.model.user_vector import UserVectorParams, params_fingerprint
from nearrec.model.weighting import ModelConfig, base_weights, served_config
from nearrec.postgres.query_repo import History, TimedEvent
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


def cf_tag(meta: CFMeta, params: UserVectorParams) -> str:
    """What a stored fold-in was computed with: the model's vector and generation, and a digest of its whole
    record (the served config, the scale), the user-vector settings and ``CF_HISTORY``. A stored vector is
    used only under the serving model's tag: a new training, or other settings, make every stored one unusable
    until the worker recomputes it."""
    doc = {"model": meta.to_metadata(), "params": params_fingerprint(params), "history": CF_HISTORY}
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return f"{meta.vector}.{meta.generation}.{digest}"


def cf_user_vector(
    retriever: Retriever, events: Sequence[TimedEvent], meta: CFMeta, params: UserVectorParams
) -> AnyVector | None:
    """The model's query vector from a history (most recent first): the weighted history itself for
    item-item models (a sparse vector: its dot product with an item's stored column is the model's score),
    its fold-in ``[u, 0]`` for the ridge model. None if nothing is known."""
    if not events:
        return None
    config = served_config(meta)
    events = History.of(events)
    weights = event_weights(events, params, config)
    if meta.sparse:
        indices, vals = query_sparse_vector(recent_history(events, weights, config.half_life, config.history))
        return Sparse(indices, vals) if indices else None
    items, decayed = recent_arrays(events, weights, config.half_life, None)
    found, stored = retriever.model_rows(items.tolist(), meta.vector)
    if not found.any():
        return None
    order = np.argsort(items[found], kind="stable")  # internal id order, as the training-time rows
    factors = item_factors_from_stored(stored[order], meta.scale)
    user = decayed[found][order].astype(np.float32) @ factors
    if not np.any(user):
        return None
    return augment_user(user)


def event_weights(events: Sequence[TimedEvent], params: UserVectorParams, config: ModelConfig) -> list[float]:
    """Each event's weight before recency, as the training-time :func:`~nearrec.model.weighting.base_weights`
    of :func:`~nearrec.model.cf.cf_values` gives it, computed once per distinct (type, value)."""
    history = History.of(events)
    pairs = list(zip(history.types, history.values, strict=True))
    distinct = list(dict.fromkeys(pairs))
    kinds = [kind for kind, _ in distinct]
    values = [np.nan if value is None else value for _, value in distinct]
    weights = base_weights(kinds, cf_values(kinds, values, params) > 0, config).tolist()
    known = dict(zip(distinct, weights, strict=True))
    return [known[pair] for pair in pairs]


def recent_arrays(
    events: Sequence[TimedEvent], weights: Sequence[float], half_life: float | None, max_items: int | None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """:func:`recent_history` as arrays (items, weights), most recent first."""
    history = History.of(events)
    order = np.argsort(-np.asarray(history.timestamps, dtype=np.float64), kind="stable")  # ties: list order
    items = np.asarray(history.item_ids, dtype=np.int64)[order]
    weight = np.asarray(weights, dtype=np.float64)[order]
    nonzero = weight != 0
    items, weight = items[nonzero], weight[nonzero]
    first = np.sort(np.unique(items, return_index=True)[1])[:max_items]  # each item's newest event
    items, weight = items[first], weight[first]
    if half_life is None:
        return items, weight
    # The same numpy operations as the training-time matrix, so the values are bit for bit the same.
    return items, weight * 0.5 ** (np.arange(len(items)) / half_life)


def recent_history(
    events: Sequence[TimedEvent], weights: Sequence[float], half_life: float | None, max_items: int | None
) -> dict[int, float]:
    """One user's row of :func:`~nearrec.model.ease.decayed_history` without sparse matrices per request:
    ``{item: weight * 0.5 ** (position_from_newest / half_life)}`` over the newest event of each item,
    zero-weight events left out of the positions, the ``max_items`` most recent items only. ``events`` are
    most recent first; ties in time go to the earlier one in that order (the later row)."""
    items, weight = recent_arrays(events, weights, half_life, max_items)
    return dict(zip(items.tolist(), weight.tolist(), strict=True))


def session_timeline(liked: Sequence[int], disliked: Sequence[int]) -> list[TimedEvent]:
    """An anonymous session as a history, most recent first: liked items in order (the last one newest),
    dislikes as dislikes."""
    timeline = [TimedEvent(i, "like", None, float(n)) for n, i in enumerate(liked)]
    timeline += [TimedEvent(i, "dislike", None, float(len(liked))) for i in disliked]
    return list(reversed(timeline))


__all__ = ["CF_HISTORY", "cf_tag", "cf_user_vector", "load_cf_meta", "recent_history", "session_timeline"]
