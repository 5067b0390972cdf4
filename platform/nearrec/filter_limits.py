"""Limits on a filter's shape, checked before it is parsed (parsing recurses)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nearrec.errors import ValidationError

MAX_DEPTH = 32
"""Deepest nesting of objects and lists a filter may have."""
INT64 = (-(2**63), 2**63 - 1)


def check_shape(obj: Any, path: str = "filter") -> None:
    """Refuse, before any recursion, a filter nested deeper than :data:`MAX_DEPTH` or holding an integer
    outside the 64-bit range the stores keep."""
    stack: list[tuple[Any, str, int]] = [(obj, path, 1)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, Mapping | list):
            if depth > MAX_DEPTH:
                raise ValidationError(f"{where}: nested deeper than {MAX_DEPTH} levels", path=where)
            entries = value.items() if isinstance(value, Mapping) else enumerate(value)
            for key, child in entries:
                sub = f"{where}[{key}]" if isinstance(value, list) else f"{where}.{key}"
                stack.append((child, sub, depth + 1))
        elif isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
            raise ValidationError(f"{where}: integer out of range (a 64-bit signed integer)", path=where)
