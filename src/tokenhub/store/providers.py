"""Provider configurations in the store (API keys are kept elsewhere, never here)."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from tokenhub.store.db import Database, upsert
from tokenhub.store.tables import providers
from tokenhub.types import ProviderConfig


class ProviderRepo:
    """Create, read, list and delete ``ProviderConfig`` rows.

    ``clock`` returns wall-clock epoch seconds for ``created_at`` / ``updated_at``.
    """

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def upsert(self, cfg: ProviderConfig) -> None:
        """Insert ``cfg`` or overwrite the row with its id (``created_at`` is kept)."""
        now = self._clock()
        values = {**_to_row(cfg), "created_at": now, "updated_at": now}
        stmt = upsert(self._db.dialect, providers, values, keep=("created_at",))
        async with self._db.engine.begin() as conn:
            await conn.execute(stmt)

    async def get(self, id: str) -> ProviderConfig | None:
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(sa.select(providers).where(providers.c.id == id))).first()
        return None if row is None else _from_row(row._mapping)

    async def list(self) -> builtins.list[ProviderConfig]:
        """Every provider, ordered by id."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(sa.select(providers).order_by(providers.c.id))
        return [_from_row(r._mapping) for r in rows]

    async def delete(self, id: str) -> bool:
        """Delete a provider and, by cascade, its models; False when it did not exist."""
        async with self._db.engine.begin() as conn:
            result = await conn.execute(sa.delete(providers).where(providers.c.id == id))
        return result.rowcount > 0


def _to_row(cfg: ProviderConfig) -> dict[str, Any]:
    return {
        "id": cfg.id,
        "type": cfg.type,
        "base_urls": list(cfg.base_urls),
        "enabled": cfg.enabled,
        "cred_store": cfg.cred_store,
        "options": dict(cfg.options),
        "autoload_models": cfg.autoload_models,
    }


def _from_row(row: Any) -> ProviderConfig:
    return ProviderConfig(
        id=row["id"],
        type=row["type"],
        base_urls=list(row["base_urls"]),
        enabled=bool(row["enabled"]),
        cred_store=row["cred_store"],
        options=dict(row["options"]),
        autoload_models=bool(row["autoload_models"]),
    )
