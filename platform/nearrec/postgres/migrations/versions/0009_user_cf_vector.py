"""Each user's folded collaborative ("cf") query vector, stored by the worker so the query service reads it
instead of the recent events

Revision ID: 0009_user_cf_vector
Revises: 0008_user_refresh_claims
Create Date: 2026-12-02 04:10:00+00:00

A recommendation by the trained model folds the user's recent events into the model's query vector. The
worker now computes that vector when it refreshes a user (the same function, :mod:`nearrec.query.collaborative`)
and writes it here in the transaction that removes the user's outbox rows: ``cf_vector`` the values (dense:
the whole vector; item-item models: the values of the sparse vector), ``cf_indices`` the sparse vector's
indices (NULL for a dense one), ``cf_tag`` what it was computed with (model vector, generation and a digest
of the model record and the user-vector settings). The query service uses it only when the tag is its own and
the user has no outbox row at all (:data:`nearrec.postgres.query_repo.USER_WITH_HISTORY`); otherwise it reads
the events, as before. ``double precision``: a dense vector's float32 values and an item-item vector's float64
ones both come back bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009_user_cf_vector"
down_revision: str | None = "0008_user_refresh_claims"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("cf_tag", sa.Text(), nullable=True))
    op.add_column("users", sa.Column("cf_vector", postgresql.ARRAY(sa.Double()), nullable=True))
    op.add_column("users", sa.Column("cf_indices", postgresql.ARRAY(sa.BigInteger()), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "cf_indices")
    op.drop_column("users", "cf_vector")
    op.drop_column("users", "cf_tag")
