"""The filterable item attributes (name -> type) a filter is checked against.

The worker records them in the items collection metadata when it indexes the attributes
(:mod:`nearrec.sync.collections`, which owns that record); before anything was synced they come from a
scan of Postgres. Cached and refreshed in the background. This is the query's only use of ``sync``: the
collection layout it reads, no code of the worker.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from nearrec.filters import FieldType
from nearrec.query.cache import Refreshing
from nearrec.sync.collections import ItemSchema, attribute_types
from nearrec.vectors.base import CollectionNotFoundError, VectorStore

SCHEMA_TTL = 30.0


class AttributeSchema:
    """Thread safe; one per query service."""

    def __init__(self, sessions: sessionmaker[Session], store: VectorStore, items: str) -> None:
        self.sessions = sessions
        self.store = store
        self.items = items
        self._types = Refreshing(self._load, SCHEMA_TTL)

    def get(self) -> dict[str, FieldType]:
        return self._types.get()

    def _load(self) -> dict[str, FieldType]:
        try:
            recorded = attribute_types(self.store, self.items)
        except CollectionNotFoundError:
            recorded = None
        if recorded is not None:
            return recorded
        with self.sessions() as session:
            return ItemSchema.load(session).filterable()


__all__ = ["AttributeSchema"]
