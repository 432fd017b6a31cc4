"""Model configurations in the store, each owned by one provider."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from tokenhub.errors import NotFound
from tokenhub.store.db import Database, upsert
from tokenhub.store.tables import models
from tokenhub.types import ModelConfig


class ModelRepo:
    """Create, read, list and delete ``ModelConfig`` rows.

    A model's provider must exist; deleting the provider deletes its models.
    ``clock`` returns wall-clock epoch seconds for ``created_at`` / ``updated_at``.
    """

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def upsert(self, m: ModelConfig) -> None:
        """Insert ``m`` or overwrite the row with its id (``created_at`` is kept).

        Raises ``NotFound`` when ``m.provider_id`` names no stored provider.
        """
        now = self._clock()
        values = {**_to_row(m), "created_at": now, "updated_at": now}
        stmt = upsert(self._db.dialect, models, values, keep=("created_at",))
        try:
            async with self._db.engine.begin() as conn:
                await conn.execute(stmt)
        except sa.exc.IntegrityError:
            # The primary key cannot conflict (ON CONFLICT handles it), so this is the
            # foreign key: the provider is missing.
            raise NotFound(f"provider {m.provider_id!r} of model {m.id!r} does not exist") from None

    async def get(self, id: str) -> ModelConfig | None:
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(sa.select(models).where(models.c.id == id))).first()
        return None if row is None else _from_row(row._mapping)

    async def list(self) -> builtins.list[ModelConfig]:
        """Every model, ordered by id."""
        return await self._select(sa.true())

    async def list_for_provider(self, provider_id: str) -> builtins.list[ModelConfig]:
        """The models of one provider, ordered by id."""
        return await self._select(models.c.provider_id == provider_id)

    async def delete(self, id: str) -> bool:
        """Delete one model; False when it did not exist."""
        async with self._db.engine.begin() as conn:
            result = await conn.execute(sa.delete(models).where(models.c.id == id))
        return result.rowcount > 0

    async def _select(self, where: sa.ColumnElement[bool]) -> builtins.list[ModelConfig]:
        query = sa.select(models).where(where).order_by(models.c.id)
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(query)
        return [_from_row(r._mapping) for r in rows]


def _to_row(m: ModelConfig) -> dict[str, Any]:
    return {
        "id": m.id,
        "provider_id": m.provider_id,
        "weight": m.weight,
        "max_context_tokens": m.max_context_tokens,
        "input_per_1k": m.input_per_1k,
        "output_per_1k": m.output_per_1k,
        "enabled": m.enabled,
        "upstream_id": m.upstream_id,
        "labels": dict(m.labels),
    }


def _from_row(row: Any) -> ModelConfig:
    return ModelConfig(
        id=row["id"],
        provider_id=row["provider_id"],
        weight=row["weight"],
        max_context_tokens=row["max_context_tokens"],
        input_per_1k=row["input_per_1k"],
        output_per_1k=row["output_per_1k"],
        enabled=bool(row["enabled"]),
        upstream_id=row["upstream_id"],
        labels=dict(row["labels"]),
    )
