"""The filterable item attributes (name -> type) a filter is checked against.

They are the item attribute schema kept in Postgres (table ``attribute_schema``, a few hundred rows at most;
see :mod:`nearrec.ingest.schema`), so a filter knows every declared attribute before the worker has synced
it, and forgets a dropped one. Cached and refreshed in the background.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from nearrec.filters import FieldType
from nearrec.ingest.schema import filter_types
from nearrec.postgres import schema_repo
from nearrec.query.cache import Refreshing
from nearrec.vectors.base import VectorStore

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
        with self.sessions() as session:
            declared = schema_repo.load(session, "item")
        return {name: kind for name, kind in filter_types(declared).items() if kind is not None}


__all__ = ["AttributeSchema"]
