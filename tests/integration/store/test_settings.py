"""SettingsRepo on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from tokenhub.store.db import Database
from tokenhub.store.settings import SettingsRepo

ROUTING = {"default_mode": "cheap", "weights": {"cost": 0.5, "latency": 0.25}, "list": [1, 2]}


async def test_get_missing_key_is_none(db: Database) -> None:
    """An unknown key reads as None."""
    assert await SettingsRepo(db).get("routing") is None


async def test_put_then_get_round_trips_nested_json(db: Database) -> None:
    """A nested JSON object comes back equal."""
    repo = SettingsRepo(db)
    await repo.put("routing", ROUTING)
    assert await repo.get("routing") == ROUTING


async def test_put_replaces_the_whole_value(db: Database) -> None:
    """A second put replaces the value instead of merging, and keys stay independent."""
    repo = SettingsRepo(db)
    await repo.put("routing", ROUTING)
    await repo.put("other", {"x": 1})
    await repo.put("routing", {"default_mode": "normal"})
    assert await repo.get("routing") == {"default_mode": "normal"}
    assert await repo.get("other") == {"x": 1}


async def test_concurrent_puts_of_one_key_leave_one_value(db: Database) -> None:
    """Twenty simultaneous puts of one key end with one of the written values."""
    repo = SettingsRepo(db)
    await asyncio.gather(*(repo.put("k", {"n": n}) for n in range(20)))
    got = await repo.get("k")
    assert got is not None and got["n"] in range(20)
