"""Reasons for recommendations (``explain=True``): for each result, the history item whose text vector is
closest to it ("because you liked ..."), or a constant reason (popular, profile, the query item).

Explainers read Postgres through the request's own session (a request holds one connection, explained or
not), and only what the caller did not read already: the recent events come from ``recommend``'s one read,
the history items' titles from their points' payload.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from nearrec.model.user_vector import UserVectorParams, history_weights
from nearrec.postgres import query_repo as repo
from nearrec.query.results import Explainer, Reason, ReasonKind
from nearrec.query.retrieval import TEXT, Retriever
from nearrec.vectors.base import Hit
from nearrec.vectors.payload import EXTERNAL_ID, TITLE, has_answer

EXPLAIN_HISTORY = 50
"""Most recent interactions searched for the closest liked item."""


def constant_reason(kind: ReasonKind, item: str | None = None) -> Explainer:
    """The same reason for every hit, with the hit's score as the similarity."""
    return lambda hits: [Reason(kind, h.score, item) for h in hits]


def history_explainer(
    session: Session,
    retriever: Retriever,
    user_id: int,
    params: UserVectorParams,
    events: Sequence[repo.TimedEvent] | None = None,
) -> Explainer:
    """Explain by the user's recent positive interactions (most recent first): ``events`` when the caller
    read at least :data:`EXPLAIN_HISTORY` of them (most recent first), else read now."""

    def explain(hits: list[Hit]) -> list[Reason]:
        recent: Sequence[repo.Event | repo.TimedEvent] = (
            events[:EXPLAIN_HISTORY]
            if events is not None
            else repo.recent_events(session, user_id, EXPLAIN_HISTORY)
        )
        positive = [e.item_id for e in recent if history_weights([(e.type, e.value)], params)[0] > 0]
        return items_explainer(session, retriever, list(dict.fromkeys(positive)))(hits)

    return explain


def items_explainer(session: Session, retriever: Retriever, history: list[int]) -> Explainer:
    """For each hit, the item of ``history`` whose vector is closest to it."""

    def explain(hits: list[Hit]) -> list[Reason]:
        if not hits or not history:
            return [Reason("profile", h.score) for h in hits]
        points = retriever.points(history)
        hist = {i: np.asarray((p.vector or {})[TEXT], dtype=np.float32) for i, p in points.items()}
        known = [i for i in history if i in hist]
        cand = retriever.vectors([h.id for h in hits])
        if not known:
            return [Reason("profile", h.score) for h in hits]
        labels = history_labels(session, {i: points[i].payload for i in known})
        hmat = np.stack([hist[i] for i in known])
        out = []
        for h in hits:
            if h.id not in cand:
                out.append(Reason("profile", h.score))
                continue
            sims = hmat @ cand[h.id]
            best = int(np.argmax(sims))
            label = labels.get(known[best], (None, None))
            out.append(Reason("history", round(float(sims[best]), 4), *label))
        return out

    return explain


def history_labels(
    session: Session, payloads: dict[int, dict[str, Any]]
) -> dict[int, tuple[str | None, str | None]]:
    """(external id, title) of history items: from their points' payload, else (points written before the
    payload held titles) from Postgres."""
    out: dict[int, tuple[str | None, str | None]] = {
        i: (p[EXTERNAL_ID], p[TITLE]) for i, p in payloads.items() if has_answer(p, False)
    }
    missing = [i for i in payloads if i not in out]
    if missing:
        rows = repo.items_by_ids(session, missing, attributes=False)
        out.update({i: (r.external_id, r.title) for i, r in rows.items()})
    return out


__all__ = ["EXPLAIN_HISTORY", "constant_reason", "history_explainer", "history_labels", "items_explainer"]
