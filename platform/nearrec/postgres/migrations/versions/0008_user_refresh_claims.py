"""A counter of user refreshes taken by workers, so a load enqueues a user's refresh once instead of per batch

Revision ID: 0008_user_refresh_claims
Revises: 0007_interaction_deletions
Create Date: 2026-12-02 01:30:00+00:00

A load of interactions must leave a pending refresh for every user it touched, which no worker can have taken
with a snapshot older than the batch that touched the user. Each batch used to probe and lock every touched
user's pending outbox row (10,000 users a batch: ~5% of the load's time). Now a batch skips the users whose
pending row an earlier batch of the same load locked or wrote, as long as no worker has taken a user refresh
since: a worker bumps ``user_refresh_claims`` before it reads the users it claimed, then waits for the
interaction batches in flight (:mod:`nearrec.postgres.outbox`). A sequence, as ``interaction_deletions``: its
value is seen at once by every session, and bumping it writes no row.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008_user_refresh_claims"
down_revision: str | None = "0007_interaction_deletions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE SEQUENCE user_refresh_claims")


def downgrade() -> None:
    op.execute("DROP SEQUENCE user_refresh_claims")
