"""Vault: metadata (salt, KDF parameters, verifier) and sealed secrets.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

# Spelled out rather than imported: a revision must not change when the schema does.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "vault_meta",
        sa.Column("id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("salt", sa.LargeBinary, nullable=False),
        sa.Column("kdf", JSON, nullable=False),
        sa.Column("verifier_nonce", sa.LargeBinary, nullable=False),
        sa.Column("verifier", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_meta")),
    )
    op.create_table(
        "vault_secrets",
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("nonce", sa.LargeBinary, nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_vault_secrets")),
    )


def downgrade() -> None:
    op.drop_table("vault_secrets")
    op.drop_table("vault_meta")
