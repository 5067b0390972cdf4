"""What the routes depend on: the per-app :class:`State`, the API-key dependencies and the query-string
helpers. Routes import this module, never ``app.py``, so the package has no import cycle."""

from __future__ import annotations

import dataclasses
import threading
from typing import Annotated, Any

import orjson
from fastapi import Depends, Path, Query, Request, Response, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from nearrec.api.auth import ApiKeys, Scope, presented_key
from nearrec.api.metrics import Metrics
from nearrec.errors import ValidationError
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


bearer_scheme = HTTPBearer(
    auto_error=False, scheme_name="bearer", description="`Authorization: Bearer KEY` (NEARREC_API_KEYS)"
)
api_key_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKey", description="`X-API-Key: KEY` (the same keys)"
)


def _require(scope: Scope) -> Any:
    async def check(  # async: no I/O, so no thread hop (a sync dependency runs in the threadpool)
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
        x_api_key: Annotated[str | None, Security(api_key_scheme)] = None,
    ) -> State:
        s = state(request)
        authorization = f"Bearer {bearer.credentials}" if bearer is not None else None
        s.keys.check(presented_key(authorization, x_api_key), scope)
        return s

    return Depends(check)


Reader = Annotated[State, _require("read")]
"""The app state, once the request's API key was checked for the read scope."""
Writer = Annotated[State, _require("write")]
"""The app state, once the request's API key was checked for the write scope."""


ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"
"""An id: 1 to 1024 characters, no control characters (a NUL byte could never be stored)."""
ID_MAX = 1024


def _id_path(what: str, example: str) -> Any:
    return Path(
        description=f"The {what}'s id, as ingested (no control characters)",
        min_length=1,
        max_length=ID_MAX,
        pattern=ID_PATTERN,
        examples=[example],
    )


ItemId = Annotated[str, _id_path("item", "tea-0")]
UserId = Annotated[str, _id_path("user", "u1")]
K = Annotated[int, Query(ge=1, le=1000, description="How many results (1-1000)", examples=[10])]
Fields = Annotated[
    str | None, Query(description="Comma-separated item attributes to return", examples=["topic,rank"])
]
FilterParam = Annotated[
    str | None,
    Query(
        description='JSON filter over item attributes, e.g. {"topic": "tea"}', examples=['{"topic": "tea"}']
    ),
]


def csv_param(raw: str | None, name: str = "fields") -> list[str]:
    """A comma-separated query parameter as a list (empty parts dropped; control characters refused)."""
    parts = [p for p in (raw or "").split(",") if p]
    for part in parts:
        if len(part) > ID_MAX or any(ord(c) < 0x20 or ord(c) == 0x7F for c in part):
            raise ValidationError(f"{name}: an entry has control characters or is too long", path=name)
    return parts


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
