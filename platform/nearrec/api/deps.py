"""What the routes depend on: the per-app :class:`State`, the API-key dependencies and the query-string
helpers. Routes import this module, never ``app.py``, so the package has no import cycle."""

from __future__ import annotations

import dataclasses
import threading
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, Request, Response

from nearrec.api.auth import ApiKeys, Scope, presented_key
from nearrec.api.metrics import Metrics
from nearrec.query.service import QueryService, Recommendation
from nearrec.runtime import Runtime

_ORJSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class State:
    """What the routes need, built in the lifespan."""

    def __init__(self, runtime: Runtime, metrics: Metrics) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.metrics = metrics
        self.keys = ApiKeys.parse(
            runtime.settings.api_keys.get_secret_value() if runtime.settings.api_keys else None
        )
        self.query = QueryService(
            runtime.read_sessions, runtime.vector_store, runtime.settings, embedder=lambda: runtime.embedder
        )
        self.worker_thread: threading.Thread | None = None
        self.worker_stop = threading.Event()
        self.worker_error: BaseException | None = None


def state(request: Request) -> State:
    """The app's :class:`State` (for routes that need no API key: the probes and /metrics)."""
    s: State = request.app.state.nearrec
    return s


def _require(scope: Scope) -> Any:
    async def check(  # async: no I/O, so no thread hop (a sync dependency runs in the threadpool)
        request: Request,
        authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
        x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> State:
        s = state(request)
        s.keys.check(presented_key(authorization, x_api_key), scope)
        return s

    return Depends(check)


Reader = Annotated[State, _require("read")]
"""The app state, once the request's API key was checked for the read scope."""
Writer = Annotated[State, _require("write")]
"""The app state, once the request's API key was checked for the write scope."""


def recommendations_response(recs: list[Recommendation]) -> Response:
    """The ``RecommendationsOut`` body, serialised once with orjson: no response-model validation pass (the
    shapes come from typed dataclasses; the route still declares ``response_model`` for the OpenAPI schema)."""
    items = [
        {
            "item_id": r.item_id,
            "score": r.score,
            "title": r.title,
            "fields": r.fields,
            "reason": None if r.reason is None else dataclasses.asdict(r.reason),
        }
        for r in recs
    ]
    return Response(orjson.dumps({"items": items}, option=_ORJSON), media_type="application/json")


def csv_param(raw: str | None) -> list[str]:
    """A comma-separated query parameter as a list (empty parts dropped)."""
    return [p for p in (raw or "").split(",") if p]
