"""Every error answer has one shape, ``{"error": {status, code, message, path, request_id}}`` (see
:class:`nearrec.api.schemas.ErrorResponse`): the handlers below produce it and the OpenAPI schema documents it."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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
    422: "invalid",
    503: "unavailable",
    500: "internal",
}

_DESCRIPTIONS = {
    401: "Missing or invalid API key",
    403: "The API key lacks the scope this endpoint needs",
    404: "Unknown user or item",
    409: "The stored vectors were made by another embedding model (run `nearrec reindex`)",
    422: "Invalid parameters or body; `path` names the field",
    503: "A store is unavailable",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, all with the :class:`ErrorResponse` body."""
    return {s: {"model": ErrorResponse, "description": _DESCRIPTIONS[s]} for s in statuses}


def error_body(status: int, message: str, path: str | None = None, code: str | None = None) -> dict[str, Any]:
    error = ErrorOut(
        status=status,
        code=code or ERROR_CODES.get(status, "error"),
        message=message,
        path=path,
        request_id=request_id.get(),
    )
    return ErrorResponse(error=error).model_dump()


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
