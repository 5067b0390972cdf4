"""Recommendations for a user and for an anonymous session, and semantic search.

The hot path: async routes (the dependencies are async too, so a request makes ONE thread hop), the query
service runs in the threadpool (the store query releases the GIL), and the answer is serialised once with
orjson (:func:`~nearrec.api.deps.recommendations_response`) instead of being validated against the response
model; ``response_model`` stays for the OpenAPI schema."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from nearrec.api.deps import Fields, FilterParam, K, Reader, UserId, csv_param, recommendations_response
from nearrec.api.errors import error_responses
from nearrec.api.schemas import AnonymousIn, RecommendationsOut, SearchIn
from nearrec.query.methods import Method

router = APIRouter(tags=["query"], responses=error_responses(401, 403, 404, 409, 422, 503))
MAX_OFFSET = 10_000


@router.get("/v1/users/{user_id}/recommendations", response_model=RecommendationsOut)
async def recommend(
    s: Reader,
    user_id: UserId,
    k: K = 10,
    filter: FilterParam = None,
    exclude: Annotated[
        str | None, Query(description="Comma-separated item ids to leave out", examples=["tea-1,tea-2"])
    ] = None,
    diversity: Annotated[
        float, Query(ge=0.0, le=1.0, description="0..1: trade relevance for variety (MMR)", examples=[0.0])
    ] = 0.0,
    explain: Annotated[bool, Query(description="Add the reason of each result")] = False,
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="Skip this many results (paging)", examples=[0])
    ] = 0,
    fields: Fields = None,
    method: Annotated[
        Method | None,
        Query(description="Retrieval method; default hybrid once `nearrec train` has run, else text"),
    ] = None,
) -> Response:
    """Top-k items for a user, never one they have already seen."""
    with s.metrics.query_seconds.labels("recommend").time():
        recs = await run_in_threadpool(
            s.query.recommend,
            user_id,
            k=k,
            filter=filter,
            exclude_ids=csv_param(exclude, "exclude"),
            diversity=diversity,
            explain=explain,
            offset=offset,
            fields=csv_param(fields),
            method=method,
        )
    return recommendations_response(recs)


@router.post("/v1/search", response_model=RecommendationsOut, responses=error_responses(413, 415))
async def search(s: Reader, body: SearchIn) -> Response:
    """Semantic search over the catalog."""
    with s.metrics.query_seconds.labels("search").time():
        recs = await run_in_threadpool(
            s.query.search, body.text, k=body.k, filter=body.filter, fields=body.fields
        )
    return recommendations_response(recs)


@router.post("/v1/recommendations", response_model=RecommendationsOut, responses=error_responses(413, 415))
async def recommend_anonymous(s: Reader, body: AnonymousIn) -> Response:
    """Recommendations for an anonymous session (items liked / disliked so far, optional text)."""
    with s.metrics.query_seconds.labels("anonymous").time():
        recs = await run_in_threadpool(
            s.query.recommend_anonymous,
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
    return recommendations_response(recs)
