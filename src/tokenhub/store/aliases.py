"""Model aliases and the diversity pool in the store.

An alias is a name that stands for one registered model or a weighted set of them
(``aliases.targets``: a JSON list of ``{"model", "weight"}``). The diversity pool that
``model_hint: "*"`` rotates over is a plain setting (``settings`` key
``diversity_pool``, value ``{"models": [...]}``), so it needs no table of its own.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from tokenhub.store.db import Database, upsert
from tokenhub.store.settings import SettingsRepo
from tokenhub.store.tables import JSONType, metadata

POOL_KEY = "diversity_pool"

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("targets", JSONType, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)


@dataclass(frozen=True, slots=True)
class AliasTarget:
    """One model an alias may resolve to, with its relative weight (> 0)."""

    model: str
    weight: float


@dataclass(frozen=True, slots=True)
class AliasRecord:
    """A stored alias: its name and the targets it splits traffic over."""

    name: str
    targets: tuple[AliasTarget, ...]


class AliasRepo:
    """Rows of ``aliases`` plus the diversity pool setting; ``clock`` gives epoch seconds."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        self._settings = SettingsRepo(db, clock)

    async def list(self) -> builtins.list[AliasRecord]:
        """Every alias, by name."""
        query = sa.select(aliases.c.name, aliases.c.targets).order_by(aliases.c.name)
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(query)
        return [AliasRecord(r.name, _targets(r.targets)) for r in rows]

    async def put(self, record: AliasRecord) -> None:
        """Create or replace an alias (``created_at`` survives a replace)."""
        now = self._clock()
        row = {
            "name": record.name,
            "targets": [{"model": t.model, "weight": t.weight} for t in record.targets],
            "created_at": now,
            "updated_at": now,
        }
        async with self._db.engine.begin() as conn:
            await conn.execute(upsert(self._db.dialect, aliases, row, keep=("created_at",)))

    async def delete(self, name: str) -> bool:
        """Delete an alias; False when it did not exist."""
        async with self._db.engine.begin() as conn:
            result = await conn.execute(sa.delete(aliases).where(aliases.c.name == name))
        return result.rowcount > 0

    async def get_pool(self) -> builtins.list[str]:
        """The diversity pool's model ids (empty: every routable model)."""
        value = await self._settings.get(POOL_KEY)
        models = (value or {}).get("models", [])
        return [str(m) for m in models] if isinstance(models, builtins.list) else []

    async def put_pool(self, models: Sequence[str]) -> None:
        await self._settings.put(POOL_KEY, {"models": builtins.list(models)})


def _targets(raw: Any) -> tuple[AliasTarget, ...]:
    return tuple(AliasTarget(str(t["model"]), t["weight"]) for t in raw)
