"""Key/value settings in the store (the routing configuration lives here)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from tokenhub.store.db import Database, upsert
from tokenhub.store.tables import settings


class SettingsRepo:
    """JSON objects stored under string keys; ``put`` replaces the whole value.

    ``clock`` returns wall-clock epoch seconds for ``updated_at``.
    """

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def get(self, key: str) -> dict[str, Any] | None:
        query = sa.select(settings.c.value).where(settings.c.key == key)
        async with self._db.engine.connect() as conn:
            value = (await conn.execute(query)).scalar_one_or_none()
        return None if value is None else dict(value)

    async def put(self, key: str, value: dict[str, Any]) -> None:
        """Store ``value`` under ``key``, replacing what was there."""
        row = {"key": key, "value": value, "updated_at": self._clock()}
        async with self._db.engine.begin() as conn:
            await conn.execute(upsert(self._db.dialect, settings, row))
