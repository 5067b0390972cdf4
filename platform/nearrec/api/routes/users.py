"""Users: create or replace, delete (their recommendations are in ``recommend.py``)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from nearrec.api.deps import Writer
from nearrec.api.errors import error_responses
from nearrec.api.schemas import UpsertOut, UserIn, upsert_status
from nearrec.errors import NotFoundError
from nearrec.ingest import service as ingest
from nearrec.ingest.records import UserOptions
from nearrec.postgres.engine import transaction

router = APIRouter(tags=["write"])


@router.put("/v1/users/{user_id}", response_model=UpsertOut, responses=error_responses(401, 403, 422, 503))
def put_user(s: Writer, user_id: str, body: UserIn) -> UpsertOut:
    """Create or replace a user (profile text, attributes)."""
    record = {**body.attributes, "id": user_id, "profile": body.profile}
    options = UserOptions(max_text_chars=s.settings.max_text_chars)
    with transaction(s.runtime.sessions) as session:
        summary = ingest.ingest_users(
            session, ingest.numbered([record]), options, source="request", on_error="abort"
        )
    s.metrics.ingested_rows.labels("users").inc(summary.inserted + summary.updated)
    return UpsertOut(id=user_id, status=upsert_status(summary.inserted, summary.updated))


@router.delete("/v1/users/{user_id}", status_code=204, responses=error_responses(401, 403, 404, 422, 503))
def delete_user(s: Writer, user_id: str) -> Response:
    """Forget a user: the row, their interactions and (through the outbox) their vector."""
    with transaction(s.runtime.sessions) as session:
        result = ingest.delete_users(session, [user_id])
    if not result.deleted:
        raise NotFoundError(f"unknown user {user_id!r}")
    return Response(status_code=204)
