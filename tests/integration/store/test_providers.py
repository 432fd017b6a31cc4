"""ProviderRepo on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from tokenhub.store.db import Database
from tokenhub.store.providers import ProviderRepo
from tokenhub.store.tables import providers
from tokenhub.types import ProviderConfig


def _vllm(**kw: object) -> ProviderConfig:
    base = {
        "id": "vllm-local",
        "type": "vllm",
        "base_urls": ["http://10.0.0.1:8000", "http://10.0.0.2:8000"],
        "options": {"latency_ms": 5, "nested": {"a": [1, 2]}},
        "autoload_models": True,
    }
    return ProviderConfig(**{**base, **kw})  # type: ignore[arg-type]


async def test_upsert_then_get_round_trips_every_field(db: Database) -> None:
    """A stored provider reads back equal, lists and JSON fields included."""
    repo = ProviderRepo(db)
    await repo.upsert(_vllm())
    assert await repo.get("vllm-local") == _vllm()


async def test_get_missing_returns_none(db: Database) -> None:
    """get() of an unknown id is None."""
    assert await ProviderRepo(db).get("nope") is None


async def test_upsert_is_idempotent(db: Database) -> None:
    """Upserting the same config twice leaves one identical row."""
    repo = ProviderRepo(db)
    await repo.upsert(_vllm())
    await repo.upsert(_vllm())
    assert await repo.list() == [_vllm()]


async def test_upsert_updates_fields_and_keeps_created_at(db: Database) -> None:
    """A second upsert overwrites the fields; created_at stays, updated_at moves."""
    now = [100.0]
    repo = ProviderRepo(db, clock=lambda: now[0])
    await repo.upsert(_vllm())
    now[0] = 200.0
    changed = _vllm(type="openai", base_urls=["https://x"], enabled=False, options={})
    await repo.upsert(changed)
    assert await repo.get("vllm-local") == changed
    async with db.engine.connect() as conn:
        row = (await conn.execute(providers.select())).one()
    assert (row.created_at, row.updated_at) == (100.0, 200.0)


async def test_list_is_ordered_by_id(db: Database) -> None:
    """list() returns every provider sorted by id."""
    repo = ProviderRepo(db)
    for pid in ("b", "c", "a"):
        await repo.upsert(ProviderConfig(id=pid, type="mock"))
    assert [p.id for p in await repo.list()] == ["a", "b", "c"]


async def test_delete_reports_whether_a_row_went(db: Database) -> None:
    """delete() is True for an existing provider, then False."""
    repo = ProviderRepo(db)
    await repo.upsert(ProviderConfig(id="p", type="mock"))
    assert await repo.delete("p") is True
    assert await repo.delete("p") is False
    assert await repo.get("p") is None


async def test_concurrent_upserts_of_one_id_leave_one_row(db: Database) -> None:
    """Twenty simultaneous upserts of the same id end with exactly one row."""
    repo = ProviderRepo(db)
    configs = [ProviderConfig(id="same", type="mock", options={"n": n}) for n in range(20)]
    await asyncio.gather(*(repo.upsert(c) for c in configs))
    rows = await repo.list()
    assert len(rows) == 1
    assert rows[0].options["n"] in range(20)
