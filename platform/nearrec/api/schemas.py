"""Request and response bodies of the HTTP API (also the OpenAPI schema at /docs)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from nearrec.query.service import Recommendation

Id = Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=r"^[^\x00-\x1f\x7f]+$")]
"""An item or user id in a body: 1 to 1024 characters, no control characters."""

SCORE_DOC = (
    "Ranking score, higher is better; its scale depends on the method: text and item similarity are cosine "
    "similarities in [-1, 1]; cf is an inner product of learned factors (unbounded); hybrid is a fused "
    "reciprocal-rank score in (0, 1]; popular is the number of recent interactions. Compare scores within "
    "one answer only."
)


class ReasonOut(BaseModel):
    kind: str = Field(description="history, profile, popular, query, item or session")
    similarity: float = Field(
        description="For history/item/session: cosine similarity to that item; for popular: the count of recent "
        "interactions; otherwise the result's score"
    )
    item_id: str | None = Field(default=None, description="The history item this recommendation is close to")
    title: str | None = None


class RecommendationOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"item_id": "tea-3", "score": 0.83, "title": "tea 3", "fields": {}}]}
    )
    item_id: str
    score: float = Field(description=SCORE_DOC)
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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [{"item_id": "tea-3", "score": 0.83, "title": "tea 3", "fields": {}}]}]
        }
    )
    items: list[RecommendationOut]

    @classmethod
    def of(cls, recs: list[Recommendation]) -> RecommendationsOut:
        return cls(items=[RecommendationOut.of(r) for r in recs])


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = Field(default=10, ge=1, le=1000, description="How many results (1-1000)")
    filter: dict[str, Any] | None = Field(default=None, description="Filter over item attributes")
    fields: list[str] = Field(default_factory=list, description="Item attributes to return")


class SearchIn(_Query):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "green tea", "k": 5, "filter": {"topic": "tea"}}]},
    )
    text: str = Field(min_length=1, max_length=20000, description="What to search for")


class AnonymousIn(_Query):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"liked": ["tea-0", "tea-1"], "k": 5, "explain": True}]},
    )
    liked: list[Id] = Field(
        default_factory=list, max_length=1000, description="Item ids the session liked, oldest first"
    )
    disliked: list[Id] = Field(
        default_factory=list, max_length=1000, description="Item ids the session disliked"
    )
    text: str | None = Field(default=None, description="Free text describing what the session wants")
    diversity: float = Field(
        default=0.0, ge=0.0, le=1.0, description="0..1: trade relevance for variety (MMR)"
    )
    explain: bool = Field(default=False, description="Add the reason of each result")
    method: str | None = Field(
        default=None, max_length=32, description="text, cf, hybrid or popular (default: hybrid if trained)"
    )


MAX_EVENTS = 10000
"""Events in one POST /v1/interactions body."""


class InteractionIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"user_id": "u1", "item_id": "tea-3", "type": "like"}]},
    )
    user_id: Id = Field(description="The user (created when unknown)")
    item_id: Id = Field(description="The item (must exist)")
    type: str = Field(
        default="view", min_length=1, max_length=64, description="view, click, like, rating, ..."
    )
    value: float | None = Field(default=None, description="E.g. the rating for type rating")
    timestamp: datetime | None = Field(default=None, description="ISO 8601; default: now")
    event_id: Id | None = Field(default=None, description="Idempotency key: a repeated event_id is ignored")


class InteractionsIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"events": [{"user_id": "u1", "item_id": "tea-3", "type": "like"}]}]},
    )
    events: list[InteractionIn] = Field(
        min_length=1, description=f"1 to {MAX_EVENTS} events (larger batches: 422 naming the limit)"
    )

    @field_validator("events", mode="before")
    @classmethod
    def _at_most(cls, v: Any) -> Any:
        if isinstance(v, list) and len(v) > MAX_EVENTS:
            raise ValueError(f"at most {MAX_EVENTS} events in one request, got {len(v)}: split the batch")
        return v


class WriteOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"accepted": 1, "ignored": 0}]})
    accepted: int = Field(description="New events stored")
    ignored: int = Field(default=0, description="Duplicates of an earlier event_id")


class ItemIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"title": "Oolong", "text": "Loose leaf oolong tea", "attributes": {"topic": "tea"}}]
        },
    )
    title: str | None = None
    text: str | None = Field(default=None, description="Description; the embedded document is title + text")
    attributes: dict[str, Any] = Field(default_factory=dict, description="Filterable item attributes")


class UpsertOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"id": "tea-0", "status": "inserted"}]})
    id: str
    status: str = Field(description="inserted, updated or unchanged (unchanged enqueues no vector work)")


class UserIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"profile": "likes green tea", "attributes": {}}]}
    )
    profile: str | None = Field(default=None, description="Free text about the user, part of their vector")
    attributes: dict[str, Any] = Field(default_factory=dict, description="Any JSON attributes")


class ItemOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"id": "tea-0", "title": "tea 0", "text": "green tea", "attributes": {"topic": "tea"},
                 "active": True, "created_at": "2026-01-02T10:00:00Z", "updated_at": "2026-01-02T10:00:00Z",
                 "interactions": 3}
            ]
        }
    )  # fmt: skip
    id: str
    title: str | None = None
    text: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    active: bool = Field(description="False for items without text: stored, never recommended")
    created_at: datetime
    updated_at: datetime
    interactions: int = Field(description="Interactions recorded with this item")


class UserOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"id": "u1", "profile": None, "attributes": {}, "created_at": "2026-01-02T10:00:00Z",
                 "updated_at": "2026-01-02T10:00:00Z", "interactions": 12}
            ]
        }
    )  # fmt: skip
    id: str
    profile: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    interactions: int = Field(description="Interactions recorded for this user")


class EventOut(BaseModel):
    item_id: str
    item_title: str | None = None
    type: str
    value: float | None = None
    timestamp: datetime
    event_id: str | None = None


class EventsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"items": [{"item_id": "tea-0", "item_title": "tea 0", "type": "like", "value": None,
                            "timestamp": "2026-01-02T10:00:00Z", "event_id": None}],
                 "limit": 50, "offset": 0, "next_offset": None}
            ]
        }
    )  # fmt: skip
    items: list[EventOut] = Field(description="Newest first")
    limit: int
    offset: int
    next_offset: int | None = Field(description="Offset of the next page; null on the last page")


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
