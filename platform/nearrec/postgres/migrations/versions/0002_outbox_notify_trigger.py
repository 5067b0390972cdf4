"""NOTIFY workers on every insert into the outbox, whoever writes it

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 04:15:00+00:00

A statement-level trigger: one pg_notify per INSERT statement, delivered at commit (Postgres folds repeats
within a transaction), so bulk ingestion, the API and repair all wake idle workers without each writer
having to remember to.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION nearrec_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('nearrec_outbox', '');
            RETURN NULL;
        END;
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER sync_outbox_notify AFTER INSERT ON sync_outbox
        FOR EACH STATEMENT EXECUTE FUNCTION nearrec_outbox_notify()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER sync_outbox_notify ON sync_outbox")
    op.execute("DROP FUNCTION nearrec_outbox_notify()")
