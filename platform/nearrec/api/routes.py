"""HTTP routes. Handlers are plain `def` (they block on Postgres and the vector store), run in the threadpool."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from nearrec.api.app import State, error_body
from nearrec.api.auth import Scope, presented_key
from nearrec.api.schemas import AnonymousIn, RecommendationsOut, SearchIn
from nearrec.errors import ValidationError

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


def _filter_param(raw: str | None) -> Any:
    if raw is None or raw == "":
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ValidationError(f"filter: not valid JSON ({exc.args[0]})", path="filter") from exc


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
) -> RecommendationsOut:
    """Top-k items for a user, never one they have already seen."""
    with s.metrics.query_seconds.labels("recommend").time():
        recs = s.query.recommend(
            user_id, k=k, filter=_filter_param(filter), exclude_ids=_csv(exclude), diversity=diversity,
            explain=explain, offset=offset, fields=_csv(fields),
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
        recs = s.query.similar_items(item_id, k=k, filter=_filter_param(filter), fields=_csv(fields))
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
            liked=body.liked, disliked=body.disliked, text=body.text, k=body.k, filter=body.filter,
            diversity=body.diversity, fields=body.fields, explain=body.explain,
        )
    return RecommendationsOut.of(recs)


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
