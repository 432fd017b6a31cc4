"""The audit trail in the store: one row per admin mutation, newest first when listed.

Rows are append-only. ``detail`` is a small JSON object that the writer has already
scrubbed of secrets (``tokenhub.security.audit`` does that); this module stores what it
is given.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from tokenhub.store.db import Database
from tokenhub.store.tables import JSONType, metadata

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False, index=True),
    sa.Column("action", sa.String(100), nullable=False, index=True),
    sa.Column("resource", sa.String(300), nullable=False),
    sa.Column("request_id", sa.String(100), nullable=False),
    sa.Column("outcome", sa.String(50), nullable=False),
    sa.Column("detail", JSONType, nullable=True),
)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audited admin action. ``outcome`` is ``success`` or ``failure:<status>``."""

    ts: float
    action: str
    resource: str
    request_id: str
    outcome: str
    detail: dict[str, Any] | None = None
    id: int | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ts": self.ts,
            "action": self.action,
            "resource": self.resource,
            "request_id": self.request_id,
            "outcome": self.outcome,
            "detail": self.detail,
        }


class AuditRepo:
    """Append and page through ``audit_log`` rows."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, entry: AuditEntry) -> None:
        values = {
            "ts": entry.ts,
            "action": entry.action[:100],
            "resource": entry.resource[:300],
            "request_id": entry.request_id[:100],
            "outcome": entry.outcome[:50],
            # SQL NULL rather than the JSON text "null" when there is no detail.
            "detail": sa.null() if entry.detail is None else entry.detail,
        }
        async with self._db.engine.begin() as conn:
            await conn.execute(sa.insert(audit_log).values(values))

    async def list(
        self, *, limit: int = 100, offset: int = 0, action: str | None = None
    ) -> builtins.list[AuditEntry]:
        """Newest first. ``action`` matches exactly, or as a prefix when it ends in ``*``
        (``vault.*`` lists every vault action)."""
        query = sa.select(audit_log)
        if action:
            query = query.where(_action_filter(action))
        query = query.order_by(audit_log.c.ts.desc(), audit_log.c.id.desc())
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(query.limit(limit).offset(offset))
        return [_from_row(r._mapping) for r in rows]

    async def count(self, action: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(audit_log)
        if action:
            query = query.where(_action_filter(action))
        async with self._db.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())


def _action_filter(action: str) -> sa.ColumnElement[bool]:
    if action.endswith("*"):
        prefix = action[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return audit_log.c.action.like(prefix + "%", escape="\\")
    return audit_log.c.action == action


def _from_row(row: Any) -> AuditEntry:
    return AuditEntry(
        id=int(row["id"]),
        ts=float(row["ts"]),
        action=row["action"],
        resource=row["resource"],
        request_id=row["request_id"],
        outcome=row["outcome"],
        detail=row["detail"],
    )
