"""The stored cf fold-in of each refreshed user (``users.cf_vector``, migration 0009).

When the worker refreshes users it folds each one's recent events into the model's query vector with the
query path's own function (:func:`nearrec.query.collaborative.cf_user_vector`, the events read as the query
reads them, :func:`nearrec.postgres.query_repo.recent_histories`) and stores it with its tag, in the
transaction that deletes the users' outbox rows. So a reader sees either the old vector with a row still
present (it reads the events instead) or the new one with the row gone. A fold-in that gives no vector is
stored as such (the tag, no values); without a trained model the stored vectors are cleared.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy.orm import Session

from nearrec.model.user_vector import UserVectorParams
from nearrec.postgres import query_repo, users
from nearrec.query.collaborative import CF_HISTORY, cf_tag, cf_user_vector, load_cf_meta
from nearrec.query.retrieval import Retriever
from nearrec.vectors.base import AnyVector, Sparse


def refresh_cf_vectors(
    session: Session, retriever: Retriever, params: UserVectorParams, user_ids: Sequence[int]
) -> int:
    """Store the fold-in of ``user_ids`` under the current model (read from the items collection, as the
    query service reads it); returns how many were stored (0 without a model: they are cleared)."""
    if not user_ids:
        return 0
    meta = load_cf_meta(retriever.store, retriever.items)
    if meta is None:
        users.clear_cf(session, user_ids)
        return 0
    tag = cf_tag(meta, params)
    histories = query_repo.recent_histories(session, user_ids, CF_HISTORY)
    empty = query_repo.History([], [], [], [])
    rows: list[users.CfRow] = []
    for user_id in user_ids:
        vector = cf_user_vector(retriever, histories.get(user_id, empty), meta, params)
        rows.append((user_id, tag, *stored_columns(vector)))
    users.store_cf(session, rows)
    return len(rows)


def stored_columns(vector: AnyVector | None) -> tuple[list[int] | None, list[float] | None]:
    """(indices, values) of a fold-in as ``users`` stores them; :func:`query_repo.stored_vector` reverses it."""
    if vector is None:
        return None, None
    if isinstance(vector, Sparse):
        return [int(i) for i in vector.indices], [float(v) for v in vector.values]
    return None, np.asarray(vector, dtype=np.float32).tolist()
