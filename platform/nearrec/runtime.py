"""The objects an entry point needs, built lazily from one Settings and closed together.

CLI commands, the API app and the worker each make one ``Runtime``; nothing here is global.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from nearrec.config import Settings
from nearrec.postgres.engine import make_engine, read_sessions, resolve_database_url, session_factory

if TYPE_CHECKING:
    from nearrec.embedding.base import Embedder
    from nearrec.vectors.base import VectorStore


class Runtime:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings if settings is not None else Settings()

    @cached_property
    def database_url(self) -> str:
        return resolve_database_url(self.settings)

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.database_url)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.engine)

    @cached_property
    def read_sessions(self) -> sessionmaker[Session]:
        """Autocommit sessions for the query path (see :func:`nearrec.postgres.engine.read_sessions`)."""
        return read_sessions(self.engine)

    @cached_property
    def vector_store(self) -> VectorStore:
        from nearrec.vectors import open_vector_store

        return open_vector_store(self.settings)

    @cached_property
    def embedder(self) -> Embedder:
        from nearrec.embedding import load_embedder

        return load_embedder(self.settings)

    def close(self) -> None:
        if "vector_store" in self.__dict__:
            self.vector_store.close()
        if "engine" in self.__dict__:
            self.engine.dispose()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
