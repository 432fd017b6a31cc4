"""Client API keys (digests only) and their monthly spend.

Revision ID: 0004
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

# Spelled out rather than imported: a revision must not change when the schema does.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("scopes", JSON, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("rotation_days", sa.Integer, nullable=True),
        sa.Column("rotated_at", sa.Float, nullable=True),
        sa.Column("monthly_budget_micro", sa.BigInteger, nullable=True),
        sa.Column("rpm", sa.Integer, nullable=True),
        sa.Column("tpm", sa.Integer, nullable=True),
        sa.Column("last_used_at", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )
    op.create_index(op.f("ix_api_keys_digest"), "api_keys", ["digest"], unique=True)
    op.create_table(
        "key_spend",
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("month", sa.String(6), nullable=False),
        sa.Column("micro_usd", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("key_id", "month", name=op.f("pk_key_spend")),
    )


def downgrade() -> None:
    op.drop_table("key_spend")
    op.drop_index(op.f("ix_api_keys_digest"), table_name="api_keys")
    op.drop_table("api_keys")
