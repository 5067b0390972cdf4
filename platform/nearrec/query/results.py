"""What the query service returns: recommendations with their reasons, from the hits' payload or joined with
the Postgres rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.orm import Session

from nearrec.errors import ValidationError
from nearrec.postgres import query_repo as repo
from nearrec.vectors.base import Hit
from nearrec.vectors.payload import ACTIVE, EXTERNAL_ID, TITLE, answer_fields, has_answer

ReasonKind = Literal["history", "profile", "popular", "query", "item", "session"]


@dataclass(frozen=True, slots=True)
class Reason:
    """Why an item was recommended: the history item (or profile, query...) it is closest to."""

    kind: ReasonKind
    similarity: float
    item_id: str | None = None
    title: str | None = None


@dataclass(frozen=True, slots=True)
class Recommendation:
    item_id: str
    score: float
    title: str | None
    fields: dict[str, Any] = field(default_factory=dict)
    reason: Reason | None = None


Explainer = Callable[[list[Hit]], list[Reason]]
"""Gives the reason of each hit of a final list (see :mod:`nearrec.query.explain`)."""


def check_page(k: int, offset: int, diversity: float) -> None:
    if not 1 <= k <= 1000:
        raise ValidationError(f"k must be between 1 and 1000, got {k}", path="k")
    if offset < 0:
        raise ValidationError(f"offset must be >= 0, got {offset}", path="offset")
    if not 0.0 <= diversity <= 1.0:
        raise ValidationError(f"diversity must be within [0, 1], got {diversity}", path="diversity")


def finish(
    session: Session,
    hits: list[Hit],
    fields: Sequence[str],
    explainer: Explainer | None,
    pending_excluded: bool = False,
) -> list[Recommendation]:
    """The answer of ``hits``: their external id, title and ``fields``, and their reasons.

    With ``pending_excluded`` (the caller kept every item with a pending outbox row out of the store query,
    read in its one round trip), each hit's point holds the item's current Postgres state, so the answer
    comes from the payload alone (:func:`from_payload`). Otherwise, or when a point predates the payload's
    title and fields (a store not rewritten since), the rows are read from Postgres and any that is no longer
    active is dropped (:func:`from_rows`)."""
    wants_fields = bool(fields)
    if pending_excluded and all(has_answer(h.payload, wants_fields) for h in hits):
        return from_payload(hits, fields, explainer)
    return from_rows(session, hits, fields, explainer)


def from_payload(hits: list[Hit], fields: Sequence[str], explainer: Explainer | None) -> list[Recommendation]:
    """The answer built from the hits' payload (:meth:`nearrec.sync.collections.ItemSchema.payload`)."""
    hits = [h for h in hits if h.payload.get(ACTIVE) == 1]
    reasons: list[Reason | None] = list(explainer(hits)) if explainer else [None] * len(hits)
    out = []
    for hit, reason in zip(hits, reasons, strict=True):
        payload = hit.payload
        picked = answer_fields(payload, fields) if fields else {}
        out.append(Recommendation(payload[EXTERNAL_ID], round(hit.score, 6), payload[TITLE], picked, reason))
    return out


def from_rows(
    session: Session, hits: list[Hit], fields: Sequence[str], explainer: Explainer | None
) -> list[Recommendation]:
    """Join the hits with their Postgres rows (title, fields); drop any that are no longer active."""
    rows = repo.items_by_ids(session, [h.id for h in hits], attributes=bool(fields))
    hits = [h for h in hits if h.id in rows and rows[h.id].active]
    reasons: list[Reason | None] = list(explainer(hits)) if explainer else [None] * len(hits)
    out = []
    for hit, reason in zip(hits, reasons, strict=True):
        row = rows[hit.id]
        picked = {f: row.attributes.get(f) for f in fields} if fields else {}
        out.append(Recommendation(row.external_id, round(hit.score, 6), row.title, picked, reason))
    return out


def recommendation_dict(rec: Recommendation) -> dict[str, Any]:
    """A plain dict for JSON output (CLI --json, HTTP)."""
    out: dict[str, Any] = {"item_id": rec.item_id, "score": rec.score, "title": rec.title}
    if rec.fields:
        out["fields"] = rec.fields
    if rec.reason is not None:
        out["reason"] = {
            "kind": rec.reason.kind,
            "similarity": rec.reason.similarity,
            "item_id": rec.reason.item_id,
            "title": rec.reason.title,
        }
    return out


__all__ = [
    "Explainer",
    "Reason",
    "ReasonKind",
    "Recommendation",
    "check_page",
    "finish",
    "from_payload",
    "from_rows",
    "recommendation_dict",
]
