"""API keys: ``NEARREC_API_KEYS="key1,key2:read"``: a bare key has full access, ``KEY:read`` may only read and
``KEY:write`` is the same as a bare key (write implies read). Keys are compared in constant
time and never logged; with no keys configured every request is allowed (and `nearrec serve` only binds to
localhost)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from nearrec.config import Scope, parse_api_keys
from nearrec.errors import ConfigError, NearrecError

_RANK = {"read": 1, "write": 2}

__all__ = ["ApiKeys", "AuthError", "ForbiddenError", "Scope", "presented_key"]


class AuthError(NearrecError):
    http_status = 401
    code = "unauthorized"


class ForbiddenError(NearrecError):
    http_status = 403
    code = "forbidden"


@dataclass(frozen=True)
class ApiKeys:
    keys: tuple[tuple[bytes, Scope], ...]

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    @classmethod
    def parse(cls, spec: str | None) -> ApiKeys:
        """Parse the setting (see :func:`nearrec.config.parse_api_keys`)."""
        try:
            pairs = parse_api_keys(spec)
        except ValueError as exc:
            raise ConfigError(f"NEARREC_API_KEYS: {exc}") from None
        return cls(tuple((key.encode(), scope) for key, scope in pairs))

    def check(self, presented: str | None, needed: Scope) -> None:
        """Raise AuthError / ForbiddenError unless ``presented`` grants ``needed``."""
        if not self.enabled:
            return
        if not presented:
            raise AuthError("missing API key: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
        candidate = presented.encode()
        granted: Scope | None = None
        for key, scope in self.keys:  # look at every key so the time does not depend on which one matched
            if hmac.compare_digest(key, candidate) and (granted is None or _RANK[scope] > _RANK[granted]):
                granted = scope
        if granted is None:
            raise AuthError("invalid API key")
        if _RANK[granted] < _RANK[needed]:
            raise ForbiddenError(f"this API key has the {granted} scope; this endpoint needs {needed}")


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key of a request: ``X-API-Key`` or ``Authorization: Bearer``, surrounding spaces trimmed in both."""
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None
