"""Dashboard access: the API's keys and read scope (:mod:`nearrec.api.auth`), presented by a browser.

A browser cannot set an ``Authorization`` header on a link, so the key may come (in this order) from the
``Authorization: Bearer`` or ``X-API-Key`` header, or the HttpOnly cookie ``nearrec_dashboard_key``. The
cookie is set by the login form (POST, the key in the body) or once by opening any dashboard URL with
``?key=KEY``: the answer is a redirect to the same URL without the key, so it stays in neither the address
bar nor the history. The access log records paths without query strings, so the key is never logged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

from fastapi import Request
from starlette.responses import RedirectResponse

from nearrec.api.auth import AuthError, ForbiddenError, presented_key

if TYPE_CHECKING:
    from nearrec.api.deps import State

COOKIE = "nearrec_dashboard_key"
KEY_PARAM = "key"


class LoginRequired(Exception):
    """No key, or one without the read scope: answer with the login page (401 or 403)."""

    def __init__(self, message: str, status: int, next_url: str) -> None:
        super().__init__(message)
        self.status = status
        self.next_url = next_url


class KeyAccepted(Exception):
    """A valid ``?key=``: answer with a redirect to the same URL without it, setting the cookie."""

    def __init__(self, key: str, next_url: str) -> None:
        super().__init__("key accepted")
        self.key = key
        self.next_url = next_url


def _url_without_key(request: Request) -> str:
    rest = [(k, v) for k, v in request.query_params.multi_items() if k != KEY_PARAM]
    path = str(request.scope.get("root_path", "")) + request.url.path
    return path + (f"?{urlencode(rest)}" if rest else "")


def require_read(request: Request) -> State:
    """The app state, once the request carries a key with the read scope (always, when no keys are set)."""
    s: State = request.app.state.nearrec
    if not s.keys.enabled:
        return s
    from_url = request.query_params.get(KEY_PARAM)
    if from_url:
        check(s, from_url, _url_without_key(request))
        raise KeyAccepted(from_url, _url_without_key(request))
    presented = presented_key(request.headers.get("authorization"), request.headers.get("x-api-key"))
    check(s, presented or request.cookies.get(COOKIE), _url_without_key(request))
    return s


def check(s: State, key: str | None, next_url: str) -> None:
    try:
        s.keys.check(key, "read")
    except (AuthError, ForbiddenError) as exc:
        raise LoginRequired(str(exc), exc.http_status, next_url) from None


def safe_next(next_url: str | None, root: str) -> str:
    """Only redirect inside the dashboard (never to another site)."""
    if next_url and next_url.startswith(root) and not next_url.startswith("//"):
        return next_url
    return root


def with_key_cookie(response: RedirectResponse, request: Request, key: str, root: str) -> RedirectResponse:
    response.set_cookie(
        COOKIE,
        key,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=root,
    )
    return response
