"""FilterExpr -> qdrant-client filter. Booleans are matched as 1 / 0 (see nearrec.filters)."""

from __future__ import annotations

from collections.abc import Collection
from functools import lru_cache

from qdrant_client import models

from nearrec.filters import And, Eq, FilterExpr, In, Not, Or, Range, match_value


def to_qdrant_filter(expr: FilterExpr | None, exclude_ids: Collection[int] = ()) -> models.Filter | None:
    """The Qdrant filter for ``expr`` with ``must_not has_id(exclude_ids)``; None when there is nothing to do."""
    must, must_not = _top(expr) if expr is not None else ((), ())
    if exclude_ids:
        must_not = (*must_not, models.HasIdCondition(has_id=list(exclude_ids)))
    if not must and not must_not:
        return None
    return models.Filter(must=list(must) or None, must_not=list(must_not) or None)


@lru_cache(maxsize=512)
def _top(expr: FilterExpr) -> tuple[tuple[models.Condition, ...], tuple[models.Condition, ...]]:
    must: list[models.Condition] = []
    must_not: list[models.Condition] = []
    for part in expr.exprs if isinstance(expr, And) else (expr,):
        if isinstance(part, Not):
            must_not.append(_condition(part.expr))
        else:
            must.append(_condition(part))
    return tuple(must), tuple(must_not)


def _condition(expr: FilterExpr) -> models.Condition:
    if isinstance(expr, Eq):
        return models.FieldCondition(key=expr.field, match=models.MatchValue(value=match_value(expr.value)))
    if isinstance(expr, In):
        values = [match_value(v) for v in expr.values]
        return models.FieldCondition(key=expr.field, match=models.MatchAny(any=values))
    if isinstance(expr, Range):
        return models.FieldCondition(
            key=expr.field, range=models.Range(gt=expr.gt, gte=expr.gte, lt=expr.lt, lte=expr.lte)
        )
    if isinstance(expr, Not):
        return models.Filter(must_not=[_condition(expr.expr)])
    if isinstance(expr, And):
        return models.Filter(must=[_condition(e) for e in expr.exprs])
    assert isinstance(expr, Or)
    return models.Filter(should=[_condition(e) for e in expr.exprs])
