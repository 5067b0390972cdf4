"""FilterExpr -> qdrant-edge filter. Booleans are matched as 1 / 0 (see nearrec.filters)."""

from __future__ import annotations

from collections.abc import Collection
from functools import lru_cache
from typing import Any

from qdrant_edge import FieldCondition, Filter, HasIdCondition, MatchAny, MatchValue, RangeFloat

from nearrec.filters import And, Eq, FilterExpr, In, Not, Or, Range, match_value


def to_edge_filter(expr: FilterExpr | None, exclude_ids: Collection[int] = ()) -> Filter | None:
    """The edge filter for ``expr`` with ``must_not has_id(exclude_ids)``; None when there is nothing to do."""
    must, must_not = _top(expr) if expr is not None else ((), ())
    if exclude_ids:
        must_not = (*must_not, HasIdCondition(set(exclude_ids)))
    if not must and not must_not:
        return None
    return Filter(must=list(must) or None, must_not=list(must_not) or None)


@lru_cache(maxsize=512)
def _top(expr: FilterExpr) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Top-level ``must`` / ``must_not`` lists (cached: expressions are immutable, hashable values)."""
    must: list[Any] = []
    must_not: list[Any] = []
    for part in expr.exprs if isinstance(expr, And) else (expr,):
        if isinstance(part, Not):
            must_not.append(_condition(part.expr))
        else:
            must.append(_condition(part))
    return tuple(must), tuple(must_not)


def _condition(expr: FilterExpr) -> Any:
    if isinstance(expr, Eq):
        return FieldCondition(expr.field, match=MatchValue(match_value(expr.value)))
    if isinstance(expr, In):
        values: list[Any] = [match_value(v) for v in expr.values]
        return FieldCondition(expr.field, match=MatchAny(values))
    if isinstance(expr, Range):
        return FieldCondition(
            expr.field, range=RangeFloat(gte=expr.gte, gt=expr.gt, lte=expr.lte, lt=expr.lt)
        )
    if isinstance(expr, Not):
        return Filter(must_not=[_condition(expr.expr)])
    if isinstance(expr, And):
        return Filter(must=[_condition(e) for e in expr.exprs])
    assert isinstance(expr, Or)
    return Filter(should=[_condition(e) for e in expr.exprs])
