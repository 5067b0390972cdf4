"""Request bodies: the API key first, then the content type, then the size, all before the app parses a byte.

A body-carrying request (POST / PUT / PATCH) to ``/v1/...`` is checked in this order, so a caller without a
valid key learns nothing else and costs the server no memory:

1. the API key (401 missing or wrong, 403 for a read-only key on a write route), as the route would check it;
2. ``Content-Type`` must be JSON (415);
3. the body is read here, counted while it arrives, and refused with 413 past ``NEARREC_MAX_BODY_BYTES``
   (at once when ``Content-Length`` says so); the app then gets the buffered body.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from nearrec.api.auth import ApiKeys, Scope, presented_key
from nearrec.api.errors import error_body
from nearrec.errors import NearrecError

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
READ_POSTS = frozenset({"/v1/search", "/v1/recommendations"})
"""POST routes that only read (everything else with a body writes)."""


def needed_scope(method: str, path: str) -> Scope:
    return "read" if method == "POST" and path in READ_POSTS else "write"


class BodyGuard:
    def __init__(self, app: ASGIApp, max_bytes: Callable[[], int]) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in BODY_METHODS
            or not scope["path"].startswith("/v1/")
        ):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        state = getattr(scope["app"].state, "nearrec", None)
        keys: ApiKeys = state.keys if state is not None else ApiKeys(())
        try:
            keys.check(
                presented_key(headers.get("authorization"), headers.get("x-api-key")),
                needed_scope(scope["method"], scope["path"]),
            )
        except NearrecError as exc:
            await _answer(send, exc.http_status, str(exc), getattr(exc, "code", None))
            return
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            shown = media or "none"
            await _answer(send, 415, f"the body must be JSON (Content-Type: application/json), got {shown}")
            return
        limit = self.max_bytes()
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _answer(send, 413, _too_large(limit))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _answer(send, 413, _too_large(limit))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _too_large(limit: int) -> str:
    return f"request body larger than {limit} bytes (NEARREC_MAX_BODY_BYTES); send smaller batches"


async def _answer(send: Send, status: int, message: str, code: str | None = None) -> None:
    payload = json.dumps(error_body(status, message, code=code)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
