"""SQLAlchemy 2 models. The schema itself is owned by the Alembic migrations in ``postgres/migrations/``;
a test checks that autogenerate finds no difference between the two."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    Identity,
    Index,
    Integer,
    MetaData,
    Text,
    func,
)
from sqlalchemy import (
    text as sql,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _trigram_gin(name: str, column: str) -> Index:
    """A trigram GIN index on ``lower(column)`` (pg_trgm: ``lower(column) ILIKE '%q%'`` from the index). On
    the expression, not the column: pg_trgm also answers ``=``, and no id lookup may pick it (migration 0006)."""
    label = f"lower_{column}"
    return Index(
        name,
        func.lower(sql(column)).label(label),
        postgresql_using="gin",
        postgresql_ops={label: "gin_trgm_ops"},
    )


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (
        # Substring search of ids and titles (ILIKE '%q%', the dashboard): pg_trgm's trigram GIN indexes.
        _trigram_gin("ix_items_external_id_trgm", "external_id"),
        _trigram_gin("ix_items_title_trgm", "title"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    external_id: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    title: Mapped[str | None] = mapped_column(Text)
    # The document that is embedded (composed at ingest from the chosen text columns).
    text: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=sql("'{}'::jsonb")
    )
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("true"))
    # sha256 of `text`: the worker skips re-embedding when it matches the vector's hash.
    content_hash: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class User(Base):
    __tablename__ = "users"
    __table_args__ = (_trigram_gin("ix_users_external_id_trgm", "external_id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    external_id: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    profile: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=sql("'{}'::jsonb")
    )
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    # The folded cf query vector the worker stored at the user's last refresh, and what it was computed with
    # (migration 0009; read by nearrec.postgres.query_repo only while the user has no outbox row).
    cf_tag: Mapped[str | None] = mapped_column(Text)
    cf_vector: Mapped[list[float] | None] = mapped_column(ARRAY(Double))
    cf_indices: Mapped[list[int] | None] = mapped_column(ARRAY(BigInteger))


class Interaction(Base):
    """No foreign keys (they halve the load rate): the delete paths of users and items remove the history
    explicitly, and the insert path resolves ids under a lock that keeps deletes out
    (``nearrec.postgres.interactions``).

    An event's identity (what makes re-loading it a no-op) is its ``event_id`` when it has one, else its user
    and ``event_key``, an md5 of its content (``nearrec.ingest.events``); each is a partial unique index, so a
    row enters one of them. There is no primary-key index: ``id`` (insertion order, unique by its identity
    sequence) breaks ties between equal timestamps, and a BRIN index finds the latest rows
    (migration 0005 says why)."""

    __tablename__ = "interactions"
    __table_args__ = (
        Index("ix_interactions_user_time", "user_id", "occurred_at"),
        Index("ix_interactions_item", "item_id"),
        Index("ix_interactions_time", "occurred_at", postgresql_using="brin"),
        Index("ix_interactions_id", "id", postgresql_using="brin"),
        Index(
            "uq_interactions_event_id",
            "event_id",
            unique=True,
            postgresql_where=sql("event_id IS NOT NULL"),
        ),
        Index(
            "uq_interactions_user_event_key",
            "user_id",
            "event_key",
            unique=True,
            postgresql_where=sql("event_id IS NULL"),
        ),
    )
    __mapper_args__ = {"primary_key": ["id"]}  # for the ORM only: no such constraint in the database

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), nullable=False)
    user_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    item_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    type: Mapped[str] = mapped_column(Text, nullable=False, server_default=sql("'view'"))
    value: Mapped[float | None] = mapped_column(Double)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    event_id: Mapped[str | None] = mapped_column(Text(collation="C"))
    event_key: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))


class AttributeSchema(Base):
    """The declared type of each item / user attribute (see ``nearrec.ingest.schema``)."""

    __tablename__ = "attribute_schema"
    __table_args__ = (
        CheckConstraint("entity IN ('item', 'user')", name="entity"),
        CheckConstraint("type IN ('string', 'int', 'float', 'bool', 'list', 'json')", name="type"),
    )

    entity: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    type: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _now()


class OutboxRow(Base):
    """Pending vector work. Written in the same transaction as the change it describes."""

    __tablename__ = "sync_outbox"
    __table_args__ = (
        Index("ix_sync_outbox_pending", "available_at", postgresql_where=sql("failed_at IS NULL")),
        Index("ix_sync_outbox_entity", "entity", "entity_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    entity: Mapped[str] = mapped_column(Text, nullable=False)  # "item" | "user"
    entity_id: Mapped[int] = mapped_column(BigInteger, nullable=False)  # internal id = point id
    op: Mapped[str] = mapped_column(
        Text, nullable=False, server_default=sql("'upsert'")
    )  # "upsert" | "delete"
    created_at: Mapped[datetime] = _now()
    available_at: Mapped[datetime] = _now()
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=sql("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
