"""Thompson-sampling bandit: bandit_arms and bandit_feedback.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "bandit_arms",
        sa.Column("model", sa.String(300), nullable=False),
        sa.Column("bucket", sa.String(10), nullable=False),
        sa.Column("alpha", sa.Float, nullable=False),
        sa.Column("beta", sa.Float, nullable=False),
        sa.Column("pulls", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("model", "bucket", name="pk_bandit_arms"),
    )
    op.create_table(
        "bandit_feedback",
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("api_key_id", sa.String(200), nullable=True),
        sa.Column("model", sa.String(300), nullable=False),
        sa.Column("bucket", sa.String(10), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("comment", sa.String(2000), nullable=True),
        sa.PrimaryKeyConstraint("request_id", name="pk_bandit_feedback"),
    )
    op.create_index("ix_bandit_feedback_ts", "bandit_feedback", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_bandit_feedback_ts", table_name="bandit_feedback")
    op.drop_table("bandit_feedback")
    op.drop_table("bandit_arms")
