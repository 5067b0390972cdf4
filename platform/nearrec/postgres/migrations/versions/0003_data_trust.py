"""Data you can trust: an attribute schema, derived event keys, and an interactions table built for loading

Revision ID: 0003_data_trust
Revises: 0002
Create Date: 2026-11-29 09:00:00+00:00

- ``attribute_schema``: the declared type of every item and user attribute (filled here from the stored
  values: the most common JSON kind of each attribute).
- ``interactions.event_key``: a uuid, unique, derived from the event id when there is one, else from the
  content (see ``nearrec.postgres.interactions``); it replaces the unique index on the ``event_id`` text.
- The foreign keys of ``interactions`` are dropped: the delete paths remove the history explicitly, and the
  insert path resolves ids under a lock that keeps deletes out (see ``nearrec.postgres.interactions``).
- The b-tree on ``occurred_at`` becomes a BRIN index (the popularity window reads a recent time range; rows
  arrive roughly in time order).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003_data_trust"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TYPES = "'string', 'int', 'float', 'bool', 'list', 'json'"

# The type of each existing attribute: the JSON kind most of its values have.
_BACKFILL = """
INSERT INTO attribute_schema (entity, name, type)
SELECT DISTINCT ON (entity, key) entity, key,
       CASE kind WHEN 'string' THEN 'string' WHEN 'boolean' THEN 'bool' WHEN 'array' THEN 'list'
                 WHEN 'object' THEN 'json'
                 ELSE CASE WHEN bool_or(is_int) THEN 'int' ELSE 'float' END END
FROM (
    SELECT entity, key, kind, count(*) AS n, bool_and(is_int) AS is_int
    FROM (
        SELECT '{entity}' AS entity, a.key, jsonb_typeof(a.value) AS kind,
               jsonb_typeof(a.value) = 'number' AND a.value::text !~ '[.eE]' AS is_int
        FROM {table} AS t, jsonb_each(t.attributes) AS a
        WHERE jsonb_typeof(a.value) <> 'null'
    ) AS v
    GROUP BY entity, key, kind
) AS k
GROUP BY entity, key, kind, n
ORDER BY entity, key, n DESC
"""


def upgrade() -> None:
    op.create_table(
        "attribute_schema",
        sa.Column("entity", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("entity IN ('item', 'user')", name=op.f("ck_attribute_schema_entity")),
        sa.CheckConstraint(f"type IN ({_TYPES})", name=op.f("ck_attribute_schema_type")),
        sa.PrimaryKeyConstraint("entity", "name", name=op.f("pk_attribute_schema")),
    )
    op.execute(_BACKFILL.format(entity="item", table="items"))
    op.execute(_BACKFILL.format(entity="user", table="users"))

    op.drop_constraint("fk_interactions_user_id_users", "interactions", type_="foreignkey")
    op.drop_constraint("fk_interactions_item_id_items", "interactions", type_="foreignkey")
    op.add_column("interactions", sa.Column("event_key", postgresql.UUID(as_uuid=True), nullable=True))
    # Existing rows keep their identity: the event id when there is one, else the row id.
    op.execute(
        "UPDATE interactions SET event_key = CASE WHEN event_id IS NOT NULL"
        " THEN md5('e' || chr(31) || event_id) ELSE md5('row' || chr(31) || id::text) END::uuid"
    )
    op.alter_column("interactions", "event_key", nullable=False, server_default=sa.text("gen_random_uuid()"))
    op.drop_constraint("uq_interactions_event_id", "interactions", type_="unique")
    op.create_index("uq_interactions_event_key", "interactions", ["event_key"], unique=True)
    op.drop_index("ix_interactions_time", table_name="interactions")
    op.create_index("ix_interactions_time", "interactions", ["occurred_at"], postgresql_using="brin")


def downgrade() -> None:
    op.drop_index("ix_interactions_time", table_name="interactions")
    op.create_index("ix_interactions_time", "interactions", ["occurred_at"], unique=False)
    op.drop_index("uq_interactions_event_key", table_name="interactions")
    # Derived keys have no event id: several rows may share one only if they had the same event id.
    op.execute(
        "DELETE FROM interactions AS a USING interactions AS b"
        " WHERE a.event_id IS NOT NULL AND a.event_id = b.event_id AND a.id > b.id"
    )
    op.create_unique_constraint("uq_interactions_event_id", "interactions", ["event_id"])
    op.drop_column("interactions", "event_key")
    op.execute("DELETE FROM interactions WHERE user_id NOT IN (SELECT id FROM users)")
    op.execute("DELETE FROM interactions WHERE item_id NOT IN (SELECT id FROM items)")
    op.create_foreign_key(
        "fk_interactions_item_id_items", "interactions", "items", ["item_id"], ["id"], ondelete="CASCADE"
    )
    op.create_foreign_key(
        "fk_interactions_user_id_users", "interactions", "users", ["user_id"], ["id"], ondelete="CASCADE"
    )
    op.drop_table("attribute_schema")
