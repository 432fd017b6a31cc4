"""ApiKeyRepo and KeySpendRepo on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from tokenhub.store.apikeys import ApiKeyRepo, KeyRecord, KeySpendRepo, api_keys, key_spend
from tokenhub.store.db import Database


def _rec(id: str = "a" * 16, digest: str = "d" * 64, **kw: object) -> KeyRecord:
    base: dict[str, object] = {
        "id": id,
        "digest": digest,
        "prefix": "tokenhub_0123abcd",
        "name": "ci",
        "scopes": ("chat", "plan"),
        "created_at": 100.0,
        "expires_at": 5000.0,
        "rotation_days": 30,
        "budget_micro": 2_500_000,
        "rpm": 60,
        "tpm": 10_000,
    }
    return KeyRecord(**{**base, **kw})  # type: ignore[arg-type]


async def test_insert_then_get_round_trips_every_field(db: Database) -> None:
    """A stored key reads back equal by id and by digest, scopes and budget included."""
    repo = ApiKeyRepo(db)
    await repo.insert(_rec())
    assert await repo.get("a" * 16) == _rec()
    assert await repo.get_by_digest("d" * 64) == _rec()
    assert await repo.get_by_digest("e" * 64) is None


async def test_digest_is_unique(db: Database) -> None:
    """Two keys can never share a digest."""
    repo = ApiKeyRepo(db)
    await repo.insert(_rec())
    with pytest.raises(sa.exc.IntegrityError):
        await repo.insert(_rec(id="b" * 16))


async def test_update_sets_columns_and_reports_missing(db: Database) -> None:
    """update() changes the given columns and returns the record; None for unknown ids."""
    repo = ApiKeyRepo(db)
    await repo.insert(_rec())
    rec = await repo.update("a" * 16, {"enabled": False, "monthly_budget_micro": None})
    assert rec is not None and rec.enabled is False and rec.monthly_budget_usd is None
    assert await repo.update("z" * 16, {"enabled": True}) is None


async def test_list_orders_by_creation_and_delete_removes(db: Database) -> None:
    """list() is oldest first; delete() removes the key and its spend rows."""
    repo, spend = ApiKeyRepo(db), KeySpendRepo(db)
    await repo.insert(_rec(id="b" * 16, digest="1" * 64, created_at=200.0))
    await repo.insert(_rec())
    assert [r.id for r in await repo.list()] == ["a" * 16, "b" * 16]
    await spend.add_many({("a" * 16, "202501"): 5})
    assert await repo.delete("a" * 16) is True
    assert await repo.delete("a" * 16) is False
    assert [r.id for r in await repo.list()] == ["b" * 16]
    assert await spend.month("202501") == {}


async def test_touch_many_never_moves_last_use_backwards(db: Database) -> None:
    """Batched last-use updates apply newer times only."""
    repo = ApiKeyRepo(db)
    await repo.insert(_rec())
    await repo.insert(_rec(id="b" * 16, digest="1" * 64))
    await repo.touch_many({"a" * 16: 50.0, "b" * 16: 60.0, "c" * 16: 1.0})
    await repo.touch_many({"a" * 16: 40.0})
    async with db.engine.connect() as conn:
        rows = (await conn.execute(sa.select(api_keys.c.id, api_keys.c.last_used_at))).all()
    assert dict(rows) == {"a" * 16: 50.0, "b" * 16: 60.0}


async def test_spend_adds_up_per_key_and_month(db: Database) -> None:
    """add_many() adds to existing rows instead of overwriting them."""
    spend = KeySpendRepo(db)
    await spend.add_many({("k1", "202501"): 1_000_001, ("k2", "202501"): 7})
    await spend.add_many({("k1", "202501"): 2, ("k1", "202502"): 3})
    assert await spend.month("202501") == {"k1": 1_000_003, "k2": 7}
    assert await spend.month("202502") == {"k1": 3}


async def test_concurrent_spend_adds_lose_nothing(db: Database) -> None:
    """Concurrent writers (as several replicas would be) sum exactly."""
    spend = KeySpendRepo(db)
    await asyncio.gather(*(spend.add_many({("k", "202501"): 10**9}) for _ in range(20)))
    assert await spend.month("202501") == {"k": 20 * 10**9}
    async with db.engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(key_spend))).scalar() == 1
