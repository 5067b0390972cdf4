"""The trigram indexes of the dashboard's search cover lower(column), so no equality lookup uses them

Revision ID: 0006_trigram_expressions
Revises: 0005_event_identity
Create Date: 2026-12-01 18:45:00+00:00

0004's trigram GIN indexes were on the columns themselves, and pg_trgm's operator class also answers ``=``.
On a table without statistics yet (the first load of a catalog), the planner took ``ix_items_external_id_trgm``
for the id lookups of a bulk load: one GIN scan per row, each reading the index's whole pending list (the
rows inserted since its last clean-up), so a 20,000-item load took 29 s instead of ~1 s. Indexes on
``lower(column)`` answer the search (``lower(column) ILIKE '%q%'``) and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_trigram_expressions"
down_revision: str | None = "0005_event_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXED = (("items", "external_id"), ("items", "title"), ("users", "external_id"))


def upgrade() -> None:
    for table, column in _INDEXED:
        name = f"ix_{table}_{column}_trgm"
        op.drop_index(name, table_name=table)
        op.create_index(
            name,
            table,
            [sa.func.lower(sa.column(column)).label(f"lower_{column}")],
            postgresql_using="gin",
            postgresql_ops={f"lower_{column}": "gin_trgm_ops"},
        )


def downgrade() -> None:
    for table, column in _INDEXED:
        name = f"ix_{table}_{column}_trgm"
        op.drop_index(name, table_name=table)
        op.create_index(
            name, table, [column], postgresql_using="gin", postgresql_ops={column: "gin_trgm_ops"}
        )
