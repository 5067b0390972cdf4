"""What the routes depend on: the per-app :class:`State`, the API-key dependencies and the query-string
helpers. Routes import this module, never ``app.py``, so the package has no import cycle."""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from nearrec.api.auth import ApiKeys, Scope, presented_key
from nearrec.api.metrics import Metrics
from nearrec.query.service import QueryService
from nearrec.runtime import Runtime


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
"""The app state, once the request's API key was checked for the read scope."""
Writer = Annotated[State, _require("write")]
"""The app state, once the request's API key was checked for the write scope."""


def csv_param(raw: str | None) -> list[str]:
    """A comma-separated query parameter as a list (empty parts dropped)."""
    return [p for p in (raw or "").split(",") if p]
