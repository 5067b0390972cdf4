"""Scratch databases on a server (evaluation, benchmarks, tests): created, used, dropped.

Database names go into DDL as quoted identifiers (psycopg's ``sql.Identifier``), never by string building.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url


def _admin_conninfo(url: str) -> str:
    """libpq connection string for the server's maintenance database ``postgres``."""
    return (
        make_url(url).set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    )


def create_database(server_url: str, name: str, *, replace: bool = True) -> str:
    """Create database ``name`` on the server of ``server_url`` (dropping a leftover one first when
    ``replace``); returns its SQLAlchemy URL."""
    with psycopg.connect(_admin_conninfo(server_url), autocommit=True) as conn:
        if replace:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return (
        make_url(server_url)
        .set(drivername="postgresql+psycopg", database=name)
        .render_as_string(hide_password=False)
    )


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(_admin_conninfo(server_url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def scratch_database(server_url: str, name: str, *, migrate: bool = True) -> Iterator[str]:
    """A new database (migrated to head unless ``migrate`` is false), dropped on exit; yields its URL."""
    url = create_database(server_url, name)
    try:
        if migrate:
            from nearrec.postgres.migrate import upgrade

            upgrade(url)
        yield url
    finally:
        drop_database(server_url, name)
