"""Client API keys and their monthly spend in the store.

Only a SHA-256 digest of each key is kept (``api_keys.digest``, unique); the key itself
exists once, in the creation or rotation answer. ``key_spend`` holds settled spend per
key and UTC month in integer micro-dollars; replicas add to it, never overwrite it.

``KeyRecord`` lives here rather than in ``tokenhub.security`` because dependencies point
from security to store; ``tokenhub.security.apikeys`` re-exports it.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from tokenhub.store.db import Database
from tokenhub.store.tables import JSONType, metadata

MICRO = 1_000_000

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False, index=True, unique=True),
    sa.Column("prefix", sa.String(32), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("scopes", JSONType, nullable=False),
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
)

key_spend = sa.Table(
    "key_spend",
    metadata,
    sa.Column("key_id", sa.String(16), primary_key=True),
    sa.Column("month", sa.String(6), primary_key=True),  # YYYYMM, UTC
    sa.Column("micro_usd", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)


@dataclass(slots=True)
class KeyRecord:
    """One client API key as the gateway knows it: everything but the key itself."""

    id: str
    digest: str = field(repr=False)
    prefix: str
    name: str
    scopes: tuple[str, ...] = ()  # empty = every scope
    enabled: bool = True
    created_at: float = 0.0
    expires_at: float | None = None
    rotation_days: int | None = None
    rotated_at: float | None = None
    budget_micro: int | None = None  # monthly budget in micro-dollars; None = unlimited
    rpm: int | None = None
    tpm: int | None = None
    last_used_at: float | None = None

    @property
    def monthly_budget_usd(self) -> float | None:
        return None if self.budget_micro is None else self.budget_micro / MICRO

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


class ApiKeyRepo:
    """Rows of ``api_keys``; ``clock`` gives wall-clock epoch seconds for ``updated_at``."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def insert(self, rec: KeyRecord) -> None:
        values = {**_to_row(rec), "updated_at": self._clock()}
        async with self._db.engine.begin() as conn:
            await conn.execute(sa.insert(api_keys).values(values))

    async def get(self, id: str) -> KeyRecord | None:
        return await self._one(api_keys.c.id == id)

    async def get_by_digest(self, digest: str) -> KeyRecord | None:
        return await self._one(api_keys.c.digest == digest)

    async def list(self) -> builtins.list[KeyRecord]:
        """Every key, oldest first."""
        query = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(query)
        return [_from_row(r._mapping) for r in rows]

    async def update(self, id: str, values: Mapping[str, Any]) -> KeyRecord | None:
        """Set the given columns; the updated record, or None when ``id`` is unknown."""
        stmt = (
            sa.update(api_keys)
            .where(api_keys.c.id == id)
            .values({**values, "updated_at": self._clock()})
        )
        async with self._db.engine.begin() as conn:
            result = await conn.execute(stmt)
        return None if result.rowcount == 0 else await self.get(id)

    async def delete(self, id: str) -> bool:
        """Delete a key and its spend rows; False when it did not exist."""
        async with self._db.engine.begin() as conn:
            result = await conn.execute(sa.delete(api_keys).where(api_keys.c.id == id))
            await conn.execute(sa.delete(key_spend).where(key_spend.c.key_id == id))
        return result.rowcount > 0

    async def touch_many(self, last_used: Mapping[str, float]) -> None:
        """Record last-use times in one batched UPDATE; an older time never overwrites a
        newer one (several replicas write these)."""
        if not last_used:
            return
        col = api_keys.c.last_used_at
        stmt = (
            sa.update(api_keys)
            .where(api_keys.c.id == sa.bindparam("key_id"))
            .where(sa.or_(col.is_(None), col < sa.bindparam("ts")))
            .values(last_used_at=sa.bindparam("ts"))
        )
        params = [{"key_id": k, "ts": ts} for k, ts in last_used.items()]
        async with self._db.engine.begin() as conn:
            await conn.execute(stmt, params)

    async def _one(self, where: sa.ColumnElement[bool]) -> KeyRecord | None:
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(sa.select(api_keys).where(where))).first()
        return None if row is None else _from_row(row._mapping)


class KeySpendRepo:
    """Settled spend per (key, UTC month) in micro-dollars, added to atomically."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def add_many(self, amounts: Mapping[tuple[str, str], int]) -> None:
        """Add ``micro_usd`` to each ``(key_id, month)`` row, creating missing rows."""
        if not amounts:
            return
        now = self._clock()
        rows = [
            {"key_id": k, "month": m, "micro_usd": v, "updated_at": now}
            for (k, m), v in amounts.items()
        ]
        async with self._db.engine.begin() as conn:
            await conn.execute(_add_stmt(self._db.dialect), rows)

    async def month(self, month: str) -> dict[str, int]:
        """key_id -> micro-dollars spent in ``month`` (YYYYMM)."""
        query = sa.select(key_spend.c.key_id, key_spend.c.micro_usd).where(
            key_spend.c.month == month
        )
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(query)
        return {r.key_id: int(r.micro_usd) for r in rows}


def _add_stmt(dialect: str) -> sa.Insert:
    if dialect == "postgresql":
        pg = postgresql.insert(key_spend)
        total = key_spend.c.micro_usd + pg.excluded.micro_usd
        set_ = {"micro_usd": total, "updated_at": pg.excluded.updated_at}
        return pg.on_conflict_do_update(index_elements=["key_id", "month"], set_=set_)
    if dialect == "sqlite":
        lite = sqlite.insert(key_spend)
        total = key_spend.c.micro_usd + lite.excluded.micro_usd
        set_ = {"micro_usd": total, "updated_at": lite.excluded.updated_at}
        return lite.on_conflict_do_update(index_elements=["key_id", "month"], set_=set_)
    raise ValueError(f"key spend is not supported on the {dialect!r} backend")


def _to_row(rec: KeyRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "digest": rec.digest,
        "prefix": rec.prefix,
        "name": rec.name,
        "scopes": list(rec.scopes),
        "enabled": rec.enabled,
        "expires_at": rec.expires_at,
        "rotation_days": rec.rotation_days,
        "rotated_at": rec.rotated_at,
        "monthly_budget_micro": rec.budget_micro,
        "rpm": rec.rpm,
        "tpm": rec.tpm,
        "last_used_at": rec.last_used_at,
        "created_at": rec.created_at,
    }


def _from_row(row: Any) -> KeyRecord:
    budget = row["monthly_budget_micro"]
    return KeyRecord(
        id=row["id"],
        digest=row["digest"],
        prefix=row["prefix"],
        name=row["name"],
        scopes=tuple(row["scopes"]),
        enabled=bool(row["enabled"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        rotation_days=row["rotation_days"],
        rotated_at=row["rotated_at"],
        budget_micro=None if budget is None else int(budget),
        rpm=row["rpm"],
        tpm=row["tpm"],
        last_used_at=row["last_used_at"],
    )
