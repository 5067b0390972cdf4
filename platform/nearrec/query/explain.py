"""Reasons for recommendations (``explain=True``): for each result, the history item whose text vector is
closest to it ("because you liked ..."), or a constant reason (popular, profile, the query item).

Explainers read Postgres through the request's own session: a request holds one connection, explained or not.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy.orm import Session

from nearrec.model.user_vector import UserVectorParams, history_weights
from nearrec.postgres import query_repo as repo
from nearrec.query.results import Explainer, Reason, ReasonKind
from nearrec.query.retrieval import Retriever
from nearrec.vectors.base import Hit

EXPLAIN_HISTORY = 50
"""Most recent interactions searched for the closest liked item."""


def constant_reason(kind: ReasonKind, item: str | None = None) -> Explainer:
    """The same reason for every hit, with the hit's score as the similarity."""
    return lambda hits: [Reason(kind, h.score, item) for h in hits]


def history_explainer(
    session: Session, retriever: Retriever, user_id: int, params: UserVectorParams
) -> Explainer:
    """Explain by the user's recent positive interactions (most recent first)."""

    def explain(hits: list[Hit]) -> list[Reason]:
        events = repo.recent_events(session, user_id, EXPLAIN_HISTORY)
        positive = [e.item_id for e in events if history_weights([(e.type, e.value)], params)[0] > 0]
        return items_explainer(session, retriever, list(dict.fromkeys(positive)))(hits)

    return explain


def items_explainer(session: Session, retriever: Retriever, history: list[int]) -> Explainer:
    """For each hit, the item of ``history`` whose vector is closest to it."""

    def explain(hits: list[Hit]) -> list[Reason]:
        if not hits or not history:
            return [Reason("profile", h.score) for h in hits]
        hist = retriever.vectors(history)
        known = [i for i in history if i in hist]
        cand = retriever.vectors([h.id for h in hits])
        if not known:
            return [Reason("profile", h.score) for h in hits]
        rows = repo.items_by_ids(session, known, attributes=False)
        hmat = np.stack([hist[i] for i in known])
        out = []
        for h in hits:
            if h.id not in cand:
                out.append(Reason("profile", h.score))
                continue
            sims = hmat @ cand[h.id]
            best = int(np.argmax(sims))
            row = rows.get(known[best])
            out.append(
                Reason(
                    "history",
                    round(float(sims[best]), 4),
                    row.external_id if row else None,
                    row.title if row else None,
                )
            )
        return out

    return explain


__all__ = ["constant_reason", "history_explainer", "items_explainer"]
