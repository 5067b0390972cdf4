"""Nearest-neighbour retrieval that keeps the service's guarantees: the business filter, active items only,
never a banned (seen or excluded) item, and exactly ``needed`` results while candidates last.

The most recent ``seen_filter_limit`` banned ids go into the store's ``must_not has_id`` filter; the older
ones are removed after the fact, paging through candidates until there are enough. The hybrid method runs
this twice (cf and text) and fuses the two lists (:func:`nearrec.model.fusion.fuse_dbsf`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nearrec.config import Settings
from nearrec.filters import And, Eq, FilterExpr
from nearrec.model.cf import CF_VECTOR
from nearrec.model.fusion import fuse_dbsf, mmr_rerank
from nearrec.vectors import payload
from nearrec.vectors.base import Hit, VectorStore

TEXT = "text"
"""Name of the text vector of items and users."""
ACTIVE = Eq(payload.ACTIVE, 1)
MAX_PAGES = 12

FloatVector = np.ndarray[Any, np.dtype[np.float32]]


class Retriever:
    """Queries of the items collection (thread safe; no database access)."""

    def __init__(self, store: VectorStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.items = settings.items_collection

    def vectors(self, ids: Sequence[int], using: str = TEXT) -> dict[int, FloatVector]:
        """The ``using`` vector of each item that has one."""
        hits = self.store.retrieve(self.items, list(ids), with_vectors=True)
        return {
            h.id: np.asarray(h.vector[using], dtype=np.float32)
            for h in hits
            if h.vector and using in h.vector
        }

    def hybrid(
        self,
        cf_vector: Any,
        text_vector: Any,
        expr: FilterExpr | None,
        banned: Sequence[int],
        needed: int,
        diversity: float,
    ) -> list[Hit]:
        """Fuse the cf and text candidate lists (each exclusion-safe) with weighted DBSF."""
        depth = max(self.settings.hybrid_candidates, needed)
        lists = [(self.nearest(cf_vector, expr, banned, depth, 0.0, using=CF_VECTOR), 1.0)]
        if text_vector is not None and self.settings.hybrid_text_weight > 0:
            text_hits = self.nearest(text_vector, expr, banned, depth, 0.0)
            lists.append((text_hits, self.settings.hybrid_text_weight))
        first: dict[int, Hit] = {}
        for hits, _ in lists:
            for hit in hits:
                first.setdefault(hit.id, hit)
        fused = [Hit(s.id, s.score, first[s.id].payload) for s in fuse_dbsf(lists)]
        if diversity > 0:
            pool = fused[: max(100, 5 * needed)]
            return mmr_rerank(pool, self.vectors([h.id for h in pool]), needed, diversity)
        return fused[:needed]

    def nearest(
        self,
        vector: Any,
        expr: FilterExpr | None,
        banned: Sequence[int],
        needed: int,
        diversity: float,
        using: str = TEXT,
    ) -> list[Hit]:
        """``needed`` nearest active items matching ``expr``, none of ``banned``, paging past the ones that
        the store filter could not hold."""
        full = And((ACTIVE, expr)) if expr is not None else ACTIVE
        limit = self.settings.seen_filter_limit
        pushed, rest = banned[:limit], set(banned[limit:])
        collected: list[Hit] = []
        taken: set[int] = set()
        page = needed + min(len(rest), 4 * needed)
        fetched = 0
        for _ in range(MAX_PAGES):
            hits = self._page(vector, using, full, pushed, fetched, page, diversity)
            fetched += len(hits)
            for hit in hits:
                if hit.id not in rest and hit.id not in taken:
                    taken.add(hit.id)
                    collected.append(hit)
            if len(collected) >= needed or len(hits) < page:
                break
            page *= 2
        if diversity <= 0:  # equal scores come back in engine order, which may vary: make ties stable
            collected.sort(key=lambda h: (-h.score, h.id))
        return collected[:needed]

    def _page(
        self,
        vector: Any,
        using: str,
        full: FilterExpr,
        pushed: Sequence[int],
        fetched: int,
        page: int,
        diversity: float,
    ) -> list[Hit]:
        """The ``page`` candidates after the first ``fetched`` ones."""
        if diversity > 0:
            return self.store.query_mmr(
                self.items,
                vector,
                using,
                fetched + page,
                diversity=diversity,
                candidates_limit=max(100, 5 * (fetched + page)),
                filter=full,
                exclude_ids=pushed,
            )[fetched:]
        return self.store.query(
            self.items, vector, using, page, filter=full, exclude_ids=pushed, offset=fetched
        )


__all__ = ["ACTIVE", "TEXT", "Retriever"]
