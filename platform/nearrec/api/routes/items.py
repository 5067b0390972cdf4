"""Items: similar items (read), create or replace, delete (write)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from nearrec.api.deps import (
    Fields,
    FilterParam,
    ItemId,
    K,
    Reader,
    Writer,
    csv_param,
    recommendations_response,
)
from nearrec.api.errors import error_responses
from nearrec.api.schemas import ItemIn, ItemOut, RecommendationsOut, UpsertOut, upsert_status
from nearrec.errors import NotFoundError
from nearrec.ingest import service as ingest
from nearrec.ingest.options import request_item_options
from nearrec.postgres import read_repo
from nearrec.postgres.engine import transaction

router = APIRouter()


@router.get(
    "/v1/items/{item_id}/similar",
    response_model=RecommendationsOut,
    tags=["query"],
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def similar(
    s: Reader, item_id: ItemId, k: K = 10, filter: FilterParam = None, fields: Fields = None
) -> Response:
    """Items most similar to an item (score: cosine similarity of the text vectors)."""
    with s.metrics.query_seconds.labels("similar").time():
        recs = await run_in_threadpool(
            s.query.similar_items, item_id, k=k, filter=filter, fields=csv_param(fields)
        )
    return recommendations_response(recs)


@router.get(
    "/v1/items/{item_id}",
    response_model=ItemOut,
    tags=["read"],
    responses=error_responses(401, 403, 404, 422, 503),
)
def get_item(s: Reader, item_id: ItemId) -> ItemOut:
    """An item as stored: title, text, attributes, whether it can be recommended, its interaction count."""
    with s.runtime.read_sessions() as session:
        item = read_repo.get_item(session, item_id)
    if item is None:
        raise NotFoundError(f"unknown item {item_id!r}")
    return ItemOut(**asdict(item))


@router.put(
    "/v1/items/{item_id}",
    response_model=UpsertOut,
    tags=["write"],
    responses=error_responses(401, 403, 413, 415, 422, 503),
)
def put_item(s: Writer, item_id: ItemId, body: ItemIn) -> UpsertOut:
    """Create or replace an item (title, text, attributes). Unchanged content enqueues nothing."""
    record = {**body.attributes, "id": item_id, "title": body.title, "text": body.text}
    options = request_item_options(s.settings)
    with transaction(s.runtime.sessions) as session:
        summary = ingest.ingest_items(
            session, ingest.numbered([record]), options, source="request", on_error="abort",
            max_attributes=s.settings.max_attributes,
        )  # fmt: skip
    s.metrics.ingested_rows.labels("items").inc(summary.inserted + summary.updated)
    return UpsertOut(id=item_id, status=upsert_status(summary.inserted, summary.updated))


@router.delete(
    "/v1/items/{item_id}", status_code=204, tags=["write"], responses=error_responses(401, 403, 404, 422, 503)
)
def delete_item(s: Writer, item_id: ItemId) -> Response:
    """Delete an item, its interactions and (through the outbox) its vector."""
    with transaction(s.runtime.sessions) as session:
        result = ingest.delete_items(session, [item_id])
    if not result.deleted:
        raise NotFoundError(f"unknown item {item_id!r}")
    return Response(status_code=204)
