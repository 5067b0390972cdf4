"""The FastAPI application: `create_app(settings)` builds everything in its lifespan, nothing at import time.

In embedded-vector mode the vector store belongs to this process, so the app also runs the sync worker in a
background thread (``run_worker``, default on when no NEARREC_QDRANT_URL is set).

The pieces: ``deps.py`` (state, API-key dependencies), ``routes/`` (one module per area), ``errors.py`` (the
one error shape), ``middleware.py`` (request id, access log, latency), ``metrics.py``, ``schemas.py``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from nearrec import __version__
from nearrec.api import collector
from nearrec.api.dashboard import mount as mount_dashboard
from nearrec.api.deps import State
from nearrec.api.docs import install_docs
from nearrec.api.errors import install_error_handlers
from nearrec.api.guard import BodyGuard
from nearrec.api.metrics import Metrics
from nearrec.api.middleware import HeadAsGet, RequestContext
from nearrec.api.routes import router
from nearrec.config import Settings
from nearrec.errors import StoreUnavailableError
from nearrec.runtime import Runtime

log = logging.getLogger(__name__)


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


def create_app(
    settings: Settings | None = None, *, run_worker: bool | None = None, server_process: bool = False
) -> FastAPI:
    """The HTTP API. ``run_worker``: run the sync worker in-process (default: when vectors are embedded).
    ``server_process``: the process exists to serve this app (`nearrec serve`), so once started it may tune
    process-wide settings (:func:`nearrec.api.collector.settle`); an app mounted in another program leaves
    them alone."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(settings)
        metrics: Metrics = app.state.metrics
        state = State(runtime, metrics)
        metrics.watch_outbox(lambda: outbox_stats(runtime))
        try:
            state.query.attribute_schema()  # warm: the first filtered request should not pay for it
        except StoreUnavailableError as exc:  # the store may come up after the API; /readyz reports it
            log.warning("vector store not reachable at startup: %s", exc)
        want_worker = runtime.settings.embedded_vectors if run_worker is None else run_worker
        if want_worker:
            _start_worker(state)
        app.state.nearrec = state
        app.state.dashboard_stats.warm(state)
        if server_process:
            collector.settle()
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
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from local files by install_docs
        redoc_url=None,  # ReDoc ships no offline bundle; /docs has the same content
    )
    app.state.metrics = Metrics()
    app.include_router(router)
    mount_dashboard(app)
    install_docs(app)
    install_error_handlers(app)
    limit = settings.max_body_bytes if settings is not None else None
    app.add_middleware(BodyGuard, max_bytes=lambda: limit or app.state.nearrec.settings.max_body_bytes)
    app.add_middleware(HeadAsGet)
    app.add_middleware(RequestContext, metrics=app.state.metrics)  # outermost: every answer has a request id
    return app


DESCRIPTION = """Recommendations, similar items and semantic search over your catalog.

**Keys.** With `NEARREC_API_KEYS` set, send a key as `Authorization: Bearer KEY` or `X-API-Key: KEY`. A bare
key may read and write; `KEY:read` may only read.

**Errors** always have the shape `{"error": {"status", "code", "message", "path", "request_id"}}`; the request
id is also in the `X-Request-ID` header and in the server's log line.

**Scores** are on the scale of the method that produced them (see `RecommendationOut.score`).
"""


def app_factory() -> FastAPI:
    """The app with its settings from the environment: the import string of ``serve --workers N``
    (``nearrec.api.app:app_factory``, uvicorn's ``factory=True``). Never runs the sync worker."""
    return create_app(None, run_worker=False, server_process=True)


def outbox_stats(runtime: Runtime) -> tuple[int, int, float]:
    """(pending rows, parked rows, age of the oldest pending row in seconds) for the metrics."""
    from nearrec.postgres import sync_repo

    with runtime.sessions() as session:
        stats = sync_repo.outbox_stats(session)
    oldest = (stats.now - stats.oldest_pending).total_seconds() if stats.oldest_pending else 0.0
    return stats.pending, stats.parked, oldest
