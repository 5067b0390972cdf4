"""Users: read back with their history, create or replace, delete (recommendations: ``recommend.py``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Response

from nearrec.api.deps import Reader, UserId, Writer
from nearrec.api.errors import error_responses
from nearrec.api.schemas import EventOut, EventsOut, UpsertOut, UserIn, UserOut, upsert_status
from nearrec.errors import NotFoundError
from nearrec.ingest import service as ingest
from nearrec.ingest.options import request_user_options
from nearrec.postgres import read_repo
from nearrec.postgres.engine import transaction

router = APIRouter(tags=["write"])
MAX_OFFSET = 1_000_000


@router.get(
    "/v1/users/{user_id}",
    response_model=UserOut,
    tags=["read"],
    responses=error_responses(401, 403, 404, 422, 503),
)
def get_user(s: Reader, user_id: UserId) -> UserOut:
    """A user as stored: profile, attributes, interaction count."""
    with s.runtime.read_sessions() as session:
        user = read_repo.get_user(session, user_id)
    if user is None:
        raise NotFoundError(f"unknown user {user_id!r}")
    return UserOut(**asdict(user))


@router.get(
    "/v1/users/{user_id}/interactions",
    response_model=EventsOut,
    tags=["read"],
    responses=error_responses(401, 403, 404, 422, 503),
)
def get_user_interactions(
    s: Reader,
    user_id: UserId,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size (1-1000)", examples=[50])] = 50,
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="Events to skip (paging), newest first", examples=[0])
    ] = 0,
) -> EventsOut:
    """A user's interactions, newest first, one page at a time (``next_offset`` is null on the last page)."""
    with s.runtime.read_sessions() as session:
        if read_repo.get_user(session, user_id) is None:
            raise NotFoundError(f"unknown user {user_id!r}")
        events = read_repo.user_events(session, user_id, limit + 1, offset)
    more = len(events) > limit
    page = [EventOut(**asdict(e)) for e in events[:limit]]
    return EventsOut(items=page, limit=limit, offset=offset, next_offset=offset + limit if more else None)


@router.put(
    "/v1/users/{user_id}", response_model=UpsertOut, responses=error_responses(401, 403, 413, 415, 422, 503)
)
def put_user(s: Writer, user_id: UserId, body: UserIn) -> UpsertOut:
    """Create or replace a user (profile text, attributes)."""
    record = {**body.attributes, "id": user_id, "profile": body.profile}
    options = request_user_options(s.settings)
    with transaction(s.runtime.sessions) as session:
        summary = ingest.ingest_users(
            session, ingest.numbered([record]), options, source="request", on_error="abort",
            max_attributes=s.settings.max_attributes,
        )  # fmt: skip
    s.metrics.ingested_rows.labels("users").inc(summary.inserted + summary.updated)
    return UpsertOut(id=user_id, status=upsert_status(summary.inserted, summary.updated))


@router.delete("/v1/users/{user_id}", status_code=204, responses=error_responses(401, 403, 404, 422, 503))
def delete_user(s: Writer, user_id: UserId) -> Response:
    """Forget a user: the row, their interactions and (through the outbox) their vector."""
    with transaction(s.runtime.sessions) as session:
        result = ingest.delete_users(session, [user_id])
    if not result.deleted:
        raise NotFoundError(f"unknown user {user_id!r}")
    return Response(status_code=204)
