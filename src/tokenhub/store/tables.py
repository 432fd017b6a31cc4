"""The store's schema as SQLAlchemy Core tables, shared by SQLite and PostgreSQL.

Conventions that later revisions should keep:
- Timestamps are ``Float`` epoch seconds (UTC). SQLite has no timezone-aware datetime
  type, so a float keeps both backends identical and ordering trivial.
- Structured values are ``JSON`` (``JSONB`` on PostgreSQL, which supports equality and
  indexing; plain ``JSON`` elsewhere).
- Constraint names come from ``NAMING_CONVENTION`` so Alembic can alter or drop them by
  name on every backend (SQLite batch mode needs names to recreate tables).

This module is the source of truth for the *current* schema; the migrations under
``store/migrations/versions`` must produce exactly this (a test compares them).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
"""JSON column type: JSONB on PostgreSQL, JSON (text) on SQLite."""

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def _timestamps() -> list[sa.Column[float]]:
    return [
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    ]


providers = sa.Table(
    "providers",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("type", sa.String(50), nullable=False),
    sa.Column("base_urls", JSONType, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("cred_store", sa.String(50), nullable=False),
    sa.Column("options", JSONType, nullable=False),
    sa.Column("autoload_models", sa.Boolean, nullable=False),
    *_timestamps(),
)

models = sa.Table(
    "models",
    metadata,
    sa.Column("id", sa.String(300), primary_key=True),
    sa.Column(
        "provider_id",
        sa.String(200),
        sa.ForeignKey("providers.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("weight", sa.Integer, nullable=False),
    sa.Column("max_context_tokens", sa.Integer, nullable=False),
    sa.Column("input_per_1k", sa.Float, nullable=False),
    sa.Column("output_per_1k", sa.Float, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("upstream_id", sa.String(300), nullable=True),
    sa.Column("labels", JSONType, nullable=False),
    *_timestamps(),
)

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", JSONType, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
