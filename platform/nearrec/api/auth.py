"""API keys: ``NEARREC_API_KEYS="key1:read,key2:write"``. Write implies read. Keys are compared in constant
time and never logged; with no keys configured every request is allowed (and `nearrec serve` only binds to
localhost)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Literal

from nearrec.errors import ConfigError, NearrecError

Scope = Literal["read", "write"]
_RANK = {"read": 1, "write": 2}


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
        keys: list[tuple[bytes, Scope]] = []
        for n, part in enumerate((spec or "").split(","), start=1):
            part = part.strip()
            if not part:
                continue
            key, sep, scope = part.rpartition(":")
            if not sep or not key or scope not in _RANK:
                # Say which entry, never echo it: it is a secret.
                raise ConfigError(f"NEARREC_API_KEYS entry {n} must look like KEY:read or KEY:write")
            keys.append((key.encode(), scope))  # type: ignore[arg-type]
        return cls(tuple(keys))

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
    if x_api_key:
        return x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None
