"""A deletion counter: every delete of users or items bumps it, so a load can keep the ids it resolved

Revision ID: 0007_interaction_deletions
Revises: 0006_trigram_expressions
Create Date: 2026-12-01 21:30:00+00:00

A load of interactions resolves the same users and items batch after batch. It keeps the ids it learnt
(:mod:`nearrec.ingest.id_cache`) as long as no user or item has been deleted since: each delete bumps
``interaction_deletions`` once it holds the lock that keeps inserts out
(:func:`nearrec.postgres.history.lock_for_delete`), and each batch reads it once it holds the insert lock.
A sequence, not a table: its value is seen at once by every session, and bumping it writes no row.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007_interaction_deletions"
down_revision: str | None = "0006_trigram_expressions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE SEQUENCE interaction_deletions")


def downgrade() -> None:
    op.execute("DROP SEQUENCE interaction_deletions")
