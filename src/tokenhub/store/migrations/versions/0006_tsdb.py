"""Embedded time-series store: tsdb_points, one row per 1-second rollup of a series.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "tsdb_points",
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("model", sa.String(300), nullable=False),
        sa.Column("provider", sa.String(200), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("sum", sa.Float, nullable=False),
        sa.Column("max", sa.Float, nullable=False),
        sa.Column("min", sa.Float, nullable=False),
    )
    op.create_index("ix_tsdb_points_metric_ts", "tsdb_points", ["metric", "ts"])
    op.create_index(
        "ix_tsdb_points_metric_model_provider_ts",
        "tsdb_points",
        ["metric", "model", "provider", "ts"],
    )
    op.create_index("ix_tsdb_points_ts", "tsdb_points", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_tsdb_points_ts", table_name="tsdb_points")
    op.drop_index("ix_tsdb_points_metric_model_provider_ts", table_name="tsdb_points")
    op.drop_index("ix_tsdb_points_metric_ts", table_name="tsdb_points")
    op.drop_table("tsdb_points")
