"""The popularity list: the most interacted-with items in the last ``popular_window_days`` (cold start, and
the ``popular`` method). The counts come from Postgres, cached and refreshed in the background."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy.orm import Session, sessionmaker

from nearrec.config import Settings
from nearrec.filters import FilterExpr, matches
from nearrec.postgres import query_repo as repo
from nearrec.query.cache import Refreshing
from nearrec.query.retrieval import ACTIVE, next_page
from nearrec.vectors.base import Hit, VectorStore

POPULAR_TTL = 30.0
POPULAR_POOL = 2000
RETRIEVE_CHUNK = 500
"""Most points read from the store at once."""


def first_chunk(needed: int) -> int:
    """The first popular items to read: twice the list (most filters keep most of the popular items; a narrow
    one makes the next read larger, see :func:`~nearrec.query.retrieval.next_page`)."""
    return min(RETRIEVE_CHUNK, 2 * needed)


class Popular:
    """Thread safe; one per query service."""

    def __init__(self, sessions: sessionmaker[Session], store: VectorStore, settings: Settings) -> None:
        self.sessions = sessions
        self.store = store
        self.settings = settings
        self._counts = Refreshing(self._load, POPULAR_TTL)

    def hits(
        self, session: Session, expr: FilterExpr | None, banned: Collection[int], needed: int
    ) -> list[Hit]:
        """Most interacted-with active items that match the filter, none of ``banned``; the score is the
        count. A cold cache is filled on the request's ``session`` (one connection per request)."""
        counts = {i: n for i, n in self._counts.get(lambda: self._read(session)) if i not in banned}
        out: list[Hit] = []
        ids = list(counts)
        start, chunk = 0, first_chunk(needed)
        while start < len(ids):
            hits = self.store.retrieve(self.settings.items_collection, ids[start : start + chunk])
            start += chunk
            for hit in hits:
                payload = hit.payload
                if matches(ACTIVE, payload) and (expr is None or matches(expr, payload)):
                    out.append(Hit(hit.id, float(counts[hit.id]), payload))
                    if len(out) >= needed:
                        return out
            # sized by the share of the popular items that matched so far, as the retriever's pages
            chunk = min(
                RETRIEVE_CHUNK, next_page(chunk, needed - len(out), len(ids) - start, start, start - len(out))
            )
        return out

    def _read(self, session: Session) -> list[tuple[int, int]]:
        return repo.popular_item_ids(session, self.settings.popular_window_days, POPULAR_POOL)

    def _load(self) -> list[tuple[int, int]]:
        """The background refresh: its own session (it runs outside any request)."""
        with self.sessions() as session:
            return self._read(session)


__all__ = ["Popular"]
