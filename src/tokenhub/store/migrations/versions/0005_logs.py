"""Request and reward logs.

Revision ID: 0005
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

# Spelled out rather than imported from store/logs.py: a revision must not change when
# the current schema does.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "request_log",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("api_key_id", sa.String(200), nullable=True),
        sa.Column("surface", sa.String(50), nullable=False),
        sa.Column("mode", sa.String(50), nullable=False),
        sa.Column("model", sa.String(300), nullable=True),
        sa.Column("provider", sa.String(200), nullable=True),
        sa.Column("tokens_in", sa.Integer, nullable=False),
        sa.Column("tokens_out", sa.Integer, nullable=False),
        sa.Column("cost_micro_usd", sa.BigInteger, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("ttft_ms", sa.Float, nullable=True),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("error_class", sa.String(50), nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("trace", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_request_log")),
    )
    op.create_index(op.f("ix_request_log_ts"), "request_log", ["ts"])
    op.create_index(op.f("ix_request_log_request_id"), "request_log", ["request_id"])
    op.create_table(
        "reward_log",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("api_key_id", sa.String(200), nullable=True),
        sa.Column("model", sa.String(300), nullable=False),
        sa.Column("provider", sa.String(200), nullable=False),
        sa.Column("mode", sa.String(50), nullable=False),
        sa.Column("token_bucket", sa.String(10), nullable=False),
        sa.Column("latency_budget_ms", sa.Float, nullable=False),
        sa.Column("cost_budget_micro_usd", sa.BigInteger, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("cost_micro_usd", sa.BigInteger, nullable=False),
        sa.Column("success", sa.Boolean, nullable=False),
        sa.Column("error_class", sa.String(50), nullable=True),
        sa.Column("reward", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reward_log")),
    )
    op.create_index(op.f("ix_reward_log_ts"), "reward_log", ["ts"])
    op.create_index(op.f("ix_reward_log_request_id"), "reward_log", ["request_id"])


def downgrade() -> None:
    op.drop_table("reward_log")
    op.drop_table("request_log")
