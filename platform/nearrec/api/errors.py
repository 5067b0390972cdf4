"""Every error answer has one shape, ``{"error": {status, code, message, path, request_id}}`` (see
:class:`nearrec.api.schemas.ErrorResponse`): the handlers below produce it and the OpenAPI schema documents it."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError as DBAPIDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from nearrec.api.schemas import ErrorOut, ErrorResponse
from nearrec.errors import NearrecError
from nearrec.logs import request_id

log = logging.getLogger(__name__)

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    503: "unavailable",
    500: "internal",
}

_DESCRIPTIONS = {
    401: "Missing or invalid API key",
    403: "The API key lacks the scope this endpoint needs",
    404: "Unknown user or item",
    409: "The stored vectors were made by another embedding model (run `nearrec reindex`)",
    413: "The body is larger than NEARREC_MAX_BODY_BYTES",
    415: "The body is not JSON (send Content-Type: application/json)",
    422: "Invalid parameters or body; `path` names the field",
    500: "Unexpected server error (the request id is in the log line)",
    503: "A store is unavailable",
}

_EXAMPLES = {
    401: (
        "unauthorized",
        "missing API key: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
        None,
    ),
    403: ("forbidden", "this API key has the read scope; this endpoint needs write", None),
    404: ("not_found", "unknown user 'u42'", None),
    409: ("conflict", "the items collection was made by another model: run `nearrec reindex`", None),
    413: ("too_large", "request body larger than 8388608 bytes (NEARREC_MAX_BODY_BYTES)", None),
    415: (
        "unsupported_media_type",
        "the body must be JSON (Content-Type: application/json), got text/plain",
        None,
    ),
    422: ("invalid", "k: Input should be less than or equal to 1000", "k"),
    500: ("internal", "internal error; see the server log", None),
    503: ("unavailable", "the vector store is unavailable", None),
}


def _example(status: int) -> dict[str, Any]:
    code, message, path = _EXAMPLES[status]
    error = {
        "status": status,
        "code": code,
        "message": message,
        "path": path,
        "request_id": "3f2a9c1d7e6b4a50",
    }
    return {"error": error}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, all with the :class:`ErrorResponse` body."""
    return {
        s: {
            "model": ErrorResponse,
            "description": _DESCRIPTIONS[s],
            "content": {"application/json": {"example": _example(s)}},
        }
        for s in statuses
    }


def error_body(status: int, message: str, path: str | None = None, code: str | None = None) -> dict[str, Any]:
    error = ErrorOut(
        status=status,
        code=code or ERROR_CODES.get(status, "error"),
        message=message,
        path=path,
        request_id=request_id.get(),
    )
    return ErrorResponse(error=error).model_dump()


_LOC_NOISE = {"body", "query", "path", "InteractionIn", "InteractionsIn"}
"""Location parts that are not a field: where the value came from, the union member pydantic tried."""


def _most_telling(errors: Any) -> dict[str, Any]:
    """The error to report. A body that is one of several shapes (one event or a batch) fails every shape;
    a broken rule (too many events, a bad value) says more than a field the other shape would need."""
    if not errors:
        return {"loc": (), "msg": "invalid request"}
    ranked = sorted(errors, key=lambda e: e.get("type") in ("missing", "extra_forbidden"))
    return dict(ranked[0])


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(NearrecError)
    async def nearrec_error(request: Request, exc: NearrecError) -> JSONResponse:
        status = getattr(exc, "http_status", 500)
        code = getattr(exc, "code", None)
        return JSONResponse(
            error_body(status, str(exc), getattr(exc, "path", None), code), status_code=status
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = _most_telling(exc.errors())
        path = ".".join(str(p) for p in first.get("loc", ()) if p not in _LOC_NOISE)
        msg = f"{path}: {first.get('msg')}" if path else str(first.get("msg"))
        return JSONResponse(error_body(422, msg, path or None), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI: a body it could not decode; one status for every bad body
            return JSONResponse(error_body(422, "the body is not valid JSON (UTF-8)"), status_code=422)
        return JSONResponse(error_body(exc.status_code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(DBAPIDataError)
    async def bad_value(request: Request, exc: DBAPIDataError) -> JSONResponse:
        # Postgres refused a value (a NUL byte in a string, a number out of range): the caller's input.
        reason = str(exc.orig).splitlines()[0] if exc.orig is not None else "invalid value"
        return JSONResponse(error_body(422, f"invalid value: {reason}"), status_code=422)

    @app.exception_handler(RecursionError)
    async def too_deep(request: Request, exc: RecursionError) -> JSONResponse:
        return JSONResponse(error_body(422, "the body is nested too deeply"), status_code=422)

    # Any other exception is answered (with the request id) and logged once by the RequestContext middleware.
