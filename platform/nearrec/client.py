"""HTTP client for application code: ``Client(base_url, api_key)`` with a typed method per endpoint.

    from nearrec.client import Client

    with Client("http://localhost:8000", api_key="...") as api:
        for rec in api.recommend("user-42", k=5, filter={"category": "garden"}):
            print(rec.item_id, rec.score, rec.title)

Errors come back as :class:`ApiError` subclasses carrying the server's status, code, message and path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx


class ApiError(Exception):
    """An error answer of the nearrec API (stable JSON shape ``{"error": {...}}``)."""

    def __init__(
        self, status: int, code: str, message: str, path: str | None, request_id: str | None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.path = path
        self.request_id = request_id


class NotFound(ApiError):
    """404: unknown user or item."""


class InvalidRequest(ApiError):
    """422: bad filter or parameters; ``path`` names the offending field."""


class Unauthorized(ApiError):
    """401: missing or wrong API key."""


class Forbidden(ApiError):
    """403: the key lacks the scope (read / write)."""


class Unavailable(ApiError):
    """503: a store is unreachable."""


_ERRORS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    422: InvalidRequest,
    503: Unavailable,
}


@dataclass(frozen=True, slots=True)
class Reason:
    kind: str
    similarity: float
    item_id: str | None = None
    title: str | None = None


@dataclass(frozen=True, slots=True)
class Recommendation:
    item_id: str
    score: float
    title: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    reason: Reason | None = None


@dataclass(frozen=True, slots=True)
class Event:
    user_id: str
    item_id: str
    type: str = "view"
    value: float | None = None
    timestamp: datetime | None = None
    event_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"user_id": self.user_id, "item_id": self.item_id, "type": self.type}
        if self.value is not None:
            out["value"] = self.value
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp.isoformat()
        if self.event_id is not None:
            out["event_id"] = self.event_id
        return out


class Client:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)

    # --- queries --------------------------------------------------------------------------------------------

    def recommend(
        self,
        user_id: str,
        k: int = 10,
        filter: Mapping[str, Any] | None = None,
        exclude_ids: Sequence[str] = (),
        diversity: float = 0.0,
        explain: bool = False,
        offset: int = 0,
        fields: Sequence[str] = (),
        method: str | None = None,
    ) -> list[Recommendation]:
        params: dict[str, Any] = {"k": k, "diversity": diversity, "explain": explain, "offset": offset}
        if method:
            params["method"] = method
        if filter:
            params["filter"] = json.dumps(filter)
        if exclude_ids:
            params["exclude"] = ",".join(exclude_ids)
        if fields:
            params["fields"] = ",".join(fields)
        return _recs(self._call("GET", f"/v1/users/{_seg(user_id)}/recommendations", params=params))

    def similar_items(
        self, item_id: str, k: int = 10, filter: Mapping[str, Any] | None = None, fields: Sequence[str] = ()
    ) -> list[Recommendation]:
        params: dict[str, Any] = {"k": k}
        if filter:
            params["filter"] = json.dumps(filter)
        if fields:
            params["fields"] = ",".join(fields)
        return _recs(self._call("GET", f"/v1/items/{_seg(item_id)}/similar", params=params))

    def search(
        self, text: str, k: int = 10, filter: Mapping[str, Any] | None = None, fields: Sequence[str] = ()
    ) -> list[Recommendation]:
        body = {"text": text, "k": k, "filter": filter, "fields": list(fields)}
        return _recs(self._call("POST", "/v1/search", json=body))

    def recommend_anonymous(
        self,
        liked: Sequence[str] = (),
        disliked: Sequence[str] = (),
        text: str | None = None,
        k: int = 10,
        filter: Mapping[str, Any] | None = None,
        diversity: float = 0.0,
        explain: bool = False,
        fields: Sequence[str] = (),
        method: str | None = None,
    ) -> list[Recommendation]:
        body = {
            "liked": list(liked),
            "disliked": list(disliked),
            "text": text,
            "k": k,
            "filter": filter,
            "diversity": diversity,
            "explain": explain,
            "fields": list(fields),
            "method": method,
        }
        return _recs(self._call("POST", "/v1/recommendations", json=body))

    # --- reading back ------------------------------------------------------------------------------------

    def get_item(self, item_id: str) -> dict[str, Any]:
        """The stored item: id, title, text, attributes, active, created_at, updated_at, interactions."""
        out: dict[str, Any] = self._call("GET", f"/v1/items/{_seg(item_id)}")
        return out

    def get_user(self, user_id: str) -> dict[str, Any]:
        """The stored user: id, profile, attributes, created_at, updated_at, interactions."""
        out: dict[str, Any] = self._call("GET", f"/v1/users/{_seg(user_id)}")
        return out

    def user_interactions(self, user_id: str, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        """One page of a user's interactions, newest first: ``{"items": [...], "next_offset": n | None}``."""
        params = {"limit": limit, "offset": offset}
        out: dict[str, Any] = self._call("GET", f"/v1/users/{_seg(user_id)}/interactions", params=params)
        return out

    # --- writes ---------------------------------------------------------------------------------------------

    def add_interactions(self, events: Sequence[Event]) -> dict[str, int]:
        """Record events; returns ``{"accepted": n, "ignored": m}`` (m = repeated event ids)."""
        out: dict[str, int] = self._call(
            "POST", "/v1/interactions", json={"events": [e.as_json() for e in events]}
        )
        return out

    def put_item(
        self,
        item_id: str,
        title: str | None = None,
        text: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create or replace an item; returns ``{"id": ..., "status": "inserted"|"updated"|"unchanged"}``."""
        body = {"title": title, "text": text, "attributes": dict(attributes or {})}
        out: dict[str, Any] = self._call("PUT", f"/v1/items/{_seg(item_id)}", json=body)
        return out

    def delete_item(self, item_id: str) -> None:
        self._call("DELETE", f"/v1/items/{_seg(item_id)}")

    def put_user(
        self, user_id: str, profile: str | None = None, attributes: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        body = {"profile": profile, "attributes": dict(attributes or {})}
        out: dict[str, Any] = self._call("PUT", f"/v1/users/{_seg(user_id)}", json=body)
        return out

    def delete_user(self, user_id: str) -> None:
        self._call("DELETE", f"/v1/users/{_seg(user_id)}")

    # --- operations -----------------------------------------------------------------------------------------

    def healthz(self) -> bool:
        return bool(self._call("GET", "/healthz").get("status") == "ok")

    def readyz(self) -> dict[str, Any]:
        out: dict[str, Any] = self._call("GET", "/readyz")
        return out

    # --- plumbing -------------------------------------------------------------------------------------------

    def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        response = self._http.request(method, url, **kwargs)
        if response.status_code >= 400:
            raise _error(response)
        if response.status_code == 204 or not response.content:
            return {}
        return response.json()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _seg(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _recs(body: Mapping[str, Any]) -> list[Recommendation]:
    out = []
    for r in body.get("items", []):
        reason = Reason(**r["reason"]) if r.get("reason") else None
        out.append(Recommendation(r["item_id"], r["score"], r.get("title"), r.get("fields") or {}, reason))
    return out


def _error(response: httpx.Response) -> ApiError:
    try:
        err = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        err = {"code": "error", "message": response.text[:200]}
    cls = _ERRORS.get(response.status_code, ApiError)
    return cls(
        response.status_code,
        str(err.get("code", "error")),
        str(err.get("message", "")),
        err.get("path"),
        err.get("request_id"),
    )
