"""The FastAPI application: `create_app(settings)` builds everything in its lifespan, nothing at import time.

In embedded-vector mode the vector store belongs to this process, so the app also runs the sync worker in a
background thread (``run_worker``, default on when no NEARREC_QDRANT_URL is set).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from nearrec import __version__
from nearrec.api.auth import ApiKeys
from nearrec.api.metrics import Metrics
from nearrec.config import Settings
from nearrec.errors import NearrecError
from nearrec.logs import request_id
from nearrec.query.service import QueryService
from nearrec.runtime import Runtime

log = logging.getLogger(__name__)
access_log = logging.getLogger("nearrec.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "invalid",
    503: "unavailable",
    500: "internal",
}


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


def error_body(status: int, message: str, path: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {
        "error": {
            "status": status,
            "code": code or ERROR_CODES.get(status, "error"),
            "message": message,
            "path": path,
            "request_id": request_id.get(),
        }
    }


def _start_worker(state: State) -> None:
    from nearrec.sync.worker import SyncWorker

    runtime = state.runtime
    worker = SyncWorker(runtime.sessions, runtime.vector_store, runtime.embedder, runtime.settings)
    worker.prepare()

    def loop() -> None:
        try:
            worker.run(
                state.worker_stop, listen_url=runtime.database_url, on_batch=state.metrics.record_batch
            )
        except BaseException as exc:  # a model mismatch stops the worker; /readyz reports it
            state.worker_error = exc
            log.error("in-process worker stopped: %s", exc)

    state.worker_thread = threading.Thread(target=loop, name="nearrec-worker", daemon=True)
    state.worker_thread.start()


def create_app(settings: Settings | None = None, *, run_worker: bool | None = None) -> FastAPI:
    """The HTTP API. ``run_worker``: run the sync worker in-process (default: when vectors are embedded)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(settings)
        metrics: Metrics = app.state.metrics
        state = State(runtime, metrics)
        metrics.watch_outbox(lambda: outbox_stats(runtime))
        state.query.attribute_schema()  # warm: the first filtered request should not pay for it
        want_worker = runtime.settings.embedded_vectors if run_worker is None else run_worker
        if want_worker:
            _start_worker(state)
        app.state.nearrec = state
        try:
            yield
        finally:
            state.worker_stop.set()
            if state.worker_thread is not None:
                state.worker_thread.join(timeout=30)
            runtime.close()

    app = FastAPI(
        title="nearrec",
        version=__version__,
        description="Recommendations, similar items and semantic search over your catalog.",
        lifespan=lifespan,
    )
    app.state.metrics = Metrics()

    from nearrec.api.routes import router

    app.include_router(router)
    _install_error_handlers(app)
    app.add_middleware(RequestContext, metrics=app.state.metrics)
    return app


def outbox_stats(runtime: Runtime) -> tuple[int, int, float]:
    """(pending rows, parked rows, age of the oldest pending row in seconds) for the metrics."""
    from nearrec.postgres import sync_repo

    with runtime.sessions() as session:
        stats = sync_repo.outbox_stats(session)
    oldest = (stats.now - stats.oldest_pending).total_seconds() if stats.oldest_pending else 0.0
    return stats.pending, stats.parked, oldest


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(NearrecError)
    async def nearrec_error(request: Request, exc: NearrecError) -> JSONResponse:
        status = getattr(exc, "http_status", 500)
        code = getattr(exc, "code", None)
        return JSONResponse(
            error_body(status, str(exc), getattr(exc, "path", None), code), status_code=status
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        path = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        msg = f"{path}: {first.get('msg')}" if path else str(first.get("msg"))
        return JSONResponse(error_body(422, msg, path or None), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(exc.status_code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body(500, "internal error; see the server log"), status_code=500)


class RequestContext:
    """Pure ASGI middleware: request id (X-Request-ID in and out) and the latency histogram."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming_request_id(scope) or uuid.uuid4().hex[:16]
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.request_seconds.labels(scope["method"], template, str(status)).observe(elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %d %.1fms",
                    scope["method"],
                    scope["path"],
                    status,
                    elapsed * 1000,
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )
            request_id.reset(token)


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")[:64]
            return text if text.replace("-", "").replace("_", "").isalnum() else None
    return None
