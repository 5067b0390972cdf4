"""Engine and session factories. Entry points build these once and own the transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from nearrec.config import Settings


def normalise_url(url: str) -> str:
    """Accept ``postgres://`` / ``postgresql://`` URLs and use the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def resolve_database_url(settings: Settings) -> str:
    """The configured database, or the embedded Postgres under the data dir (started on demand)."""
    if settings.database_url is not None:
        return normalise_url(settings.database_url.get_secret_value())
    from nearrec.postgres.embedded_server import start_embedded_postgres

    return start_embedded_postgres(settings.data_dir)


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """A pooled engine. ``pool_size`` connections stay open (more than the busiest moment needs, so the pool
    never churns); overflow connections are for bursts. No pre-ping round trip per checkout: after a Postgres
    restart the first failing request invalidates the whole pool and the next ones reconnect."""
    return create_engine(url, pool_size=pool_size, max_overflow=20, pool_recycle=3600)


def read_sessions(engine: Engine) -> sessionmaker[Session]:
    """Sessions for read-only request paths: autocommit, so no BEGIN / ROLLBACK round trips per request."""
    return sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False)


@contextmanager
def read_connection(sessions: sessionmaker[Session]) -> Iterator[psycopg.Connection[Any]]:
    """A pooled psycopg connection of ``sessions``' engine, in autocommit mode, for one read-only statement
    per request without a Session around it: a Session's checkout and close cost ~0.15 ms of CPU more than
    the pool's (0.28 against 0.12 ms per read, the statement included, scratch). The connection goes back to
    the pool in its default (transactional) mode; one that cannot be put back in it (broken, closed by the
    server) is discarded."""
    pooled = sessions.kw["bind"].raw_connection()
    conn: psycopg.Connection[Any] = pooled.driver_connection
    try:
        conn.autocommit = True
        yield conn
    finally:
        try:
            conn.autocommit = False
        except psycopg.Error:
            pooled.invalidate()
        pooled.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error. Used by entry points only."""
    with factory() as session, session.begin():
        yield session


def server_version(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SHOW server_version")).scalar_one())
