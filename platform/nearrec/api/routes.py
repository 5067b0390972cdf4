"""HTTP routes. Handlers are plain `def` (they block on Postgres and the vector store), run in the threadpool."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from nearrec.api.app import State, error_body
from nearrec.api.auth import Scope, presented_key
from nearrec.api.schemas import (
    AnonymousIn,
    InteractionIn,
    InteractionsIn,
    ItemIn,
    RecommendationsOut,
    SearchIn,
    UpsertOut,
    UserIn,
    WriteOut,
)
from nearrec.errors import NotFoundError
from nearrec.ingest import service as catalog
from nearrec.ingest.records import InteractionOptions, ItemOptions, UserOptions
from nearrec.postgres.engine import transaction
from nearrec.query.methods import Method

router = APIRouter()


def state(request: Request) -> State:
    s: State = request.app.state.nearrec
    return s


def _require(scope: Scope) -> Any:
    def check(
        request: Request,
        authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
        x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> State:
        s = state(request)
        s.keys.check(presented_key(authorization, x_api_key), scope)
        return s

    return Depends(check)


Reader = Annotated[State, _require("read")]
Writer = Annotated[State, _require("write")]


def _csv(raw: str | None) -> list[str]:
    return [p for p in (raw or "").split(",") if p]


@router.get("/v1/users/{user_id}/recommendations", response_model=RecommendationsOut, tags=["query"])
def recommend(
    s: Reader,
    user_id: str,
    k: Annotated[int, Query(ge=1, le=1000)] = 10,
    filter: Annotated[str | None, Query(description='JSON filter, e.g. {"category": "garden"}')] = None,
    exclude: Annotated[str | None, Query(description="Comma-separated item ids to leave out")] = None,
    diversity: Annotated[float, Query(ge=0.0, le=1.0)] = 0.0,
    explain: bool = False,
    offset: Annotated[int, Query(ge=0)] = 0,
    fields: Annotated[str | None, Query(description="Comma-separated item attributes to return")] = None,
    method: Annotated[
        Method | None,
        Query(description="Retrieval method; default hybrid once `nearrec train` has run, else text"),
    ] = None,
) -> RecommendationsOut:
    """Top-k items for a user, never one they have already seen."""
    with s.metrics.query_seconds.labels("recommend").time():
        recs = s.query.recommend(
            user_id,
            k=k,
            filter=filter,
            exclude_ids=_csv(exclude),
            diversity=diversity,
            explain=explain,
            offset=offset,
            fields=_csv(fields),
            method=method,
        )
    return RecommendationsOut.of(recs)


@router.get("/v1/items/{item_id}/similar", response_model=RecommendationsOut, tags=["query"])
def similar(
    s: Reader,
    item_id: str,
    k: Annotated[int, Query(ge=1, le=1000)] = 10,
    filter: str | None = None,
    fields: str | None = None,
) -> RecommendationsOut:
    """Items most similar to an item."""
    with s.metrics.query_seconds.labels("similar").time():
        recs = s.query.similar_items(item_id, k=k, filter=filter, fields=_csv(fields))
    return RecommendationsOut.of(recs)


@router.post("/v1/search", response_model=RecommendationsOut, tags=["query"])
def search(s: Reader, body: SearchIn) -> RecommendationsOut:
    """Semantic search over the catalog."""
    with s.metrics.query_seconds.labels("search").time():
        recs = s.query.search(body.text, k=body.k, filter=body.filter, fields=body.fields)
    return RecommendationsOut.of(recs)


@router.post("/v1/recommendations", response_model=RecommendationsOut, tags=["query"])
def recommend_anonymous(s: Reader, body: AnonymousIn) -> RecommendationsOut:
    """Recommendations for an anonymous session (items liked / disliked so far, optional text)."""
    with s.metrics.query_seconds.labels("anonymous").time():
        recs = s.query.recommend_anonymous(
            liked=body.liked,
            disliked=body.disliked,
            text=body.text,
            k=body.k,
            filter=body.filter,
            diversity=body.diversity,
            fields=body.fields,
            explain=body.explain,
            method=body.method,
        )
    return RecommendationsOut.of(recs)


@router.post("/v1/interactions", response_model=WriteOut, tags=["write"])
def add_interactions(s: Writer, body: InteractionIn | InteractionsIn) -> WriteOut:
    """Record one event or a batch ({"events": [...]}). Written to Postgres with its outbox row in one
    transaction; the user's vector follows within seconds. A repeated event_id is ignored."""
    events = body.events if isinstance(body, InteractionsIn) else [body]
    records = [
        {
            "user_id": e.user_id,
            "item_id": e.item_id,
            "type": e.type,
            "value": e.value,
            "timestamp": e.timestamp.isoformat() if e.timestamp else None,
            "event_id": e.event_id,
        }
        for e in events
    ]
    with transaction(s.runtime.sessions) as session:
        summary = catalog.ingest_interactions(
            session, catalog.numbered(records), InteractionOptions(), source="request", on_error="abort"
        )
    s.metrics.ingested_rows.labels("interactions").inc(summary.inserted)
    return WriteOut(accepted=summary.inserted, ignored=summary.unchanged)


def _status(summary: catalog.Summary) -> str:
    return "inserted" if summary.inserted else "updated" if summary.updated else "unchanged"


@router.put("/v1/items/{item_id}", response_model=UpsertOut, tags=["write"])
def put_item(s: Writer, item_id: str, body: ItemIn) -> UpsertOut:
    """Create or replace an item (title, text, attributes). Unchanged content enqueues nothing."""
    record = {**body.attributes, "id": item_id, "title": body.title, "text": body.text}
    options = ItemOptions(max_text_chars=s.settings.max_text_chars)
    with transaction(s.runtime.sessions) as session:
        summary = catalog.ingest_items(
            session, catalog.numbered([record]), options, source="request", on_error="abort"
        )
    s.metrics.ingested_rows.labels("items").inc(summary.inserted + summary.updated)
    return UpsertOut(id=item_id, status=_status(summary))


@router.delete("/v1/items/{item_id}", status_code=204, tags=["write"])
def delete_item(s: Writer, item_id: str) -> Response:
    """Delete an item, its interactions and (through the outbox) its vector."""
    with transaction(s.runtime.sessions) as session:
        result = catalog.delete_items(session, [item_id])
    if not result.deleted:
        raise NotFoundError(f"unknown item {item_id!r}")
    return Response(status_code=204)


@router.put("/v1/users/{user_id}", response_model=UpsertOut, tags=["write"])
def put_user(s: Writer, user_id: str, body: UserIn) -> UpsertOut:
    """Create or replace a user (profile text, attributes)."""
    record = {**body.attributes, "id": user_id, "profile": body.profile}
    options = UserOptions(max_text_chars=s.settings.max_text_chars)
    with transaction(s.runtime.sessions) as session:
        summary = catalog.ingest_users(
            session, catalog.numbered([record]), options, source="request", on_error="abort"
        )
    s.metrics.ingested_rows.labels("users").inc(summary.inserted + summary.updated)
    return UpsertOut(id=user_id, status=_status(summary))


@router.delete("/v1/users/{user_id}", status_code=204, tags=["write"])
def delete_user(s: Writer, user_id: str) -> Response:
    """Forget a user: the row, their interactions and (through the outbox) their vector."""
    with transaction(s.runtime.sessions) as session:
        result = catalog.delete_users(session, [user_id])
    if not result.deleted:
        raise NotFoundError(f"unknown user {user_id!r}")
    return Response(status_code=204)


@router.get("/healthz", tags=["ops"])
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", tags=["ops"])
def readyz(request: Request) -> JSONResponse:
    """Both stores answer (and the in-process worker, if any, is alive)."""
    s = state(request)
    checks: dict[str, str] = {}
    try:
        with s.runtime.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = f"unavailable: {type(exc).__name__}"
    try:
        s.runtime.vector_store.list_collections()
        checks["vectors"] = "ok"
    except Exception as exc:
        checks["vectors"] = f"unavailable: {type(exc).__name__}"
    if s.worker_thread is not None:
        checks["worker"] = "ok" if s.worker_thread.is_alive() else f"stopped: {s.worker_error}"
    ok = all(v == "ok" for v in checks.values())
    if ok:
        return JSONResponse({"status": "ready", "checks": checks})
    body = error_body(503, "not ready: " + ", ".join(f"{k} {v}" for k, v in checks.items() if v != "ok"))
    body["checks"] = checks
    return JSONResponse(body, status_code=503)


@router.get("/metrics", tags=["ops"], include_in_schema=False)
def metrics(request: Request) -> Response:
    return Response(generate_latest(state(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)
