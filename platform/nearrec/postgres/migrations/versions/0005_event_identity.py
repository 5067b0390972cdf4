"""Interactions: an event's identity is its event id, or (its user, a hash of its content); no primary-key index

Revision ID: 0005_event_identity
Revises: 0004_item_search
Create Date: 2026-12-01 18:30:00+00:00

What makes loading cost is the number of b-trees every row enters, and how randomly (bench/ingest.py prints
each one's cost). 0003 gave every row a uuid ``event_key``: an md5 of the event id, or of the content, in a
unique b-tree that every row entered at a random place. Now:

- A row with an ``event_id`` is identified by the id itself: ``uq_interactions_event_id``, unique on
  ``event_id`` (collation "C": ids compare as bytes) where it is not NULL. Exact (no hash), and ids that grow
  with time (sequences, ULIDs, UUIDv7, snowflakes) enter the index at its end.
- A row without one is identified by its user and ``event_key`` (the md5 of its content, as before):
  ``uq_interactions_user_event_key``, unique on ``(user_id, event_key)`` where ``event_id`` IS NULL. The key
  holds the user, so this is the same identity as before; the loader writes a user's rows together, so the
  rows enter the index next to each other. ``event_key`` is NULL for rows written with an event id from now on
  (older ones keep the key they had; nothing reads it).
- The primary-key b-tree on ``id`` goes (``id`` stays: the identity sequence numbers rows in insertion order,
  which breaks ties between equal timestamps); a BRIN index on ``id`` finds the most recent rows.

Rows written by other means than nearrec with the same event id (possible before: their key was random) are
removed first, keeping the oldest, as 0003's downgrade does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_event_identity"
down_revision: str | None = "0004_item_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("uq_interactions_event_key", table_name="interactions")
    op.execute(
        "DELETE FROM interactions AS a USING interactions AS b"
        " WHERE a.event_id IS NOT NULL AND a.event_id = b.event_id AND a.id > b.id"
    )
    op.alter_column("interactions", "event_id", type_=sa.Text(collation="C"), existing_nullable=True)
    op.alter_column("interactions", "event_key", nullable=True, server_default=None)
    op.create_index(
        "uq_interactions_event_id",
        "interactions",
        ["event_id"],
        unique=True,
        postgresql_where=sa.text("event_id IS NOT NULL"),
    )
    op.create_index(
        "uq_interactions_user_event_key",
        "interactions",
        ["user_id", "event_key"],
        unique=True,
        postgresql_where=sa.text("event_id IS NULL"),
    )
    op.drop_constraint("pk_interactions", "interactions", type_="primary")
    op.create_index("ix_interactions_id", "interactions", ["id"], postgresql_using="brin")


def downgrade() -> None:
    op.drop_index("ix_interactions_id", table_name="interactions")
    op.create_primary_key("pk_interactions", "interactions", ["id"])
    op.drop_index("uq_interactions_user_event_key", table_name="interactions")
    op.drop_index("uq_interactions_event_id", table_name="interactions")
    op.execute(
        "UPDATE interactions SET event_key = md5('e' || chr(31) || event_id)::uuid"
        " WHERE event_key IS NULL AND event_id IS NOT NULL"
    )
    op.execute("UPDATE interactions SET event_key = gen_random_uuid() WHERE event_key IS NULL")
    op.alter_column("interactions", "event_key", nullable=False, server_default=sa.text("gen_random_uuid()"))
    op.alter_column("interactions", "event_id", type_=sa.Text(), existing_nullable=True)
    op.create_index("uq_interactions_event_key", "interactions", ["event_key"], unique=True)
