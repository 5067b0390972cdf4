"""LISTEN / NOTIFY on the outbox channel: wakes idle workers as soon as work is committed.

A trigger on ``sync_outbox`` (migration 0002) notifies :data:`CHANNEL` on every insert; Postgres delivers it at
commit, once per transaction. Workers also poll, so a missed notification only costs latency.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

CHANNEL = "nearrec_outbox"
log = logging.getLogger(__name__)


def libpq_conninfo(sqlalchemy_url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://...``) as a libpq connection string."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


class OutboxListener:
    """A dedicated autocommit connection LISTENing on :data:`CHANNEL`."""

    def __init__(self, sqlalchemy_url: str) -> None:
        self._conn = psycopg.connect(libpq_conninfo(sqlalchemy_url), autocommit=True)
        self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))

    def wait(self, timeout: float) -> bool:
        """Block until a notification arrives (True) or ``timeout`` seconds pass (False)."""
        got = False
        for _ in self._conn.notifies(timeout=timeout, stop_after=1):
            got = True
        return got

    def close(self) -> None:
        try:
            self._conn.close()
        except Exception:  # pragma: no cover - closing a broken connection
            log.debug("closing the listener connection failed", exc_info=True)
