"""Probes and metrics for operators; they need no API key."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from nearrec.api.deps import state
from nearrec.api.errors import error_body, error_responses

router = APIRouter(tags=["ops"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses=error_responses(503))
def readyz(request: Request) -> JSONResponse:
    """Both stores answer (and the in-process worker, if any, is alive)."""
    s = state(request)
    checks: dict[str, str] = {}
    try:
        with s.runtime.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = f"unavailable: {type(exc).__name__}"
    try:
        s.runtime.vector_store.list_collections()
        checks["vectors"] = "ok"
    except Exception as exc:
        checks["vectors"] = f"unavailable: {type(exc).__name__}"
    if s.worker_thread is not None:
        checks["worker"] = "ok" if s.worker_thread.is_alive() else f"stopped: {s.worker_error}"
    ok = all(v == "ok" for v in checks.values())
    if ok:
        return JSONResponse({"status": "ready", "checks": checks})
    body = error_body(503, "not ready: " + ", ".join(f"{k} {v}" for k, v in checks.items() if v != "ok"))
    body["checks"] = checks
    return JSONResponse(body, status_code=503)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus text format: HTTP latency, query latency, rows written, sync throughput, outbox backlog."""
    return Response(generate_latest(state(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)
