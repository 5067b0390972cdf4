"""Request and response bodies of the HTTP API (also the OpenAPI schema at /docs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nearrec.query.service import Recommendation


class ReasonOut(BaseModel):
    kind: str = Field(description="history, profile, popular, item or session")
    similarity: float
    item_id: str | None = Field(default=None, description="The history item this recommendation is close to")
    title: str | None = None


class RecommendationOut(BaseModel):
    item_id: str
    score: float
    title: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    reason: ReasonOut | None = None

    @classmethod
    def of(cls, rec: Recommendation) -> RecommendationOut:
        reason = None
        if rec.reason is not None:
            r = rec.reason
            reason = ReasonOut(kind=r.kind, similarity=r.similarity, item_id=r.item_id, title=r.title)
        return cls(item_id=rec.item_id, score=rec.score, title=rec.title, fields=rec.fields, reason=reason)


class RecommendationsOut(BaseModel):
    items: list[RecommendationOut]

    @classmethod
    def of(cls, recs: list[Recommendation]) -> RecommendationsOut:
        return cls(items=[RecommendationOut.of(r) for r in recs])


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = Field(default=10, ge=1, le=1000)
    filter: dict[str, Any] | None = Field(default=None, description="Filter over item attributes")
    fields: list[str] = Field(default_factory=list, description="Item attributes to return")


class SearchIn(_Query):
    text: str = Field(min_length=1)


class AnonymousIn(_Query):
    liked: list[str] = Field(default_factory=list, description="Item ids the session liked, oldest first")
    disliked: list[str] = Field(default_factory=list)
    text: str | None = Field(default=None, description="Free text describing what the session wants")
    diversity: float = Field(default=0.0, ge=0.0, le=1.0)
    explain: bool = False
    method: str | None = Field(
        default=None, description="text, cf, hybrid or popular (default: hybrid if trained)"
    )


class InteractionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str = Field(min_length=1)
    item_id: str = Field(min_length=1)
    type: str = Field(default="view", min_length=1)
    value: float | None = None
    timestamp: datetime | None = Field(default=None, description="ISO 8601; default: now")
    event_id: str | None = None


class InteractionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[InteractionIn] = Field(min_length=1, max_length=10000)


class WriteOut(BaseModel):
    accepted: int
    ignored: int = Field(default=0, description="Duplicates of an earlier event_id")


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = None
    text: str | None = Field(default=None, description="Description; the embedded document is title + text")
    attributes: dict[str, Any] = Field(default_factory=dict, description="Filterable item attributes")


class UpsertOut(BaseModel):
    id: str
    status: str = Field(description="inserted, updated or unchanged (unchanged enqueues no vector work)")


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


def upsert_status(inserted: int, updated: int) -> str:
    """The ``status`` of an :class:`UpsertOut` from the ingest summary's counts."""
    return "inserted" if inserted else "updated" if updated else "unchanged"


class ErrorOut(BaseModel):
    status: int = Field(description="The HTTP status, repeated")
    code: str = Field(description="Stable machine-readable code: not_found, invalid, unauthorized, ...")
    message: str
    path: str | None = Field(default=None, description="The offending field, e.g. filter.and[1].price")
    request_id: str | None = Field(default=None, description="Also in the X-Request-ID response header")


class ErrorResponse(BaseModel):
    """The body of every error answer."""

    error: ErrorOut
