"""Interaction events (one, or a batch)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from nearrec.api.deps import Writer
from nearrec.api.errors import error_responses
from nearrec.api.schemas import InteractionIn, InteractionsIn, WriteOut
from nearrec.ingest import service as ingest
from nearrec.ingest.options import interaction_options
from nearrec.postgres.engine import transaction

router = APIRouter(tags=["write"])


@router.post(
    "/v1/interactions", response_model=WriteOut, responses=error_responses(401, 403, 413, 415, 422, 503)
)
def add_interactions(s: Writer, body: InteractionIn | InteractionsIn) -> WriteOut:
    """Record one event or a batch ({"events": [...]}). Written to Postgres with its outbox row in one
    transaction; the user's vector follows within seconds. A repeated event_id is ignored."""
    events = body.events if isinstance(body, InteractionsIn) else [body]
    now = datetime.now(UTC)  # an event without a timestamp happened now: a later identical one is new
    records = [
        {
            "user_id": e.user_id,
            "item_id": e.item_id,
            "type": e.type,
            "value": e.value,
            "timestamp": (e.timestamp or now).isoformat(),
            "event_id": e.event_id,
        }
        for e in events
    ]
    options = interaction_options(s.settings)
    with transaction(s.runtime.sessions) as session:
        summary = ingest.ingest_interactions(
            session, ingest.numbered(records), options, source="request", on_error="abort"
        )
    s.metrics.ingested_rows.labels("interactions").inc(summary.inserted)
    return WriteOut(accepted=summary.inserted, ignored=summary.unchanged)
