"""The retrieval methods of a recommendation: the one definition every layer (API, CLI, evaluation) uses.

- ``text``: nearest items to the user's text vector;
- ``cf``: nearest items to the user's collaborative vector (needs `nearrec train`);
- ``hybrid``: the ``cf`` and ``text`` lists fused (needs `nearrec train`);
- ``popular``: the most interacted-with items (the cold-start list).

Without an explicit method, a recommendation uses ``hybrid`` once `nearrec train` has run, else ``text``.
"""

from __future__ import annotations

from typing import Literal, TypeGuard, get_args

from nearrec.errors import ValidationError

Method = Literal["text", "cf", "hybrid", "popular"]
METHODS: tuple[Method, ...] = get_args(Method)
CF_METHODS: frozenset[Method] = frozenset({"cf", "hybrid"})
"""The methods that need the trained collaborative model."""


def is_method(value: object) -> TypeGuard[Method]:
    return value in METHODS


def check_method(value: str | None, path: str = "method") -> Method | None:
    """``value`` as a :data:`Method` (None stays None: the default); a clear error for anything else."""
    if value is None or is_method(value):
        return value
    raise ValidationError(f"unknown method {value!r}; expected one of {', '.join(METHODS)}", path=path)


def default_method(trained: bool) -> Method:
    """The method of a request that names none: ``hybrid`` once the cf model is trained, else ``text``."""
    return "hybrid" if trained else "text"


__all__ = ["CF_METHODS", "METHODS", "Method", "check_method", "default_method", "is_method"]
