"""ModelRepo on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from tokenhub.errors import NotFound
from tokenhub.store.db import Database
from tokenhub.store.models import ModelRepo
from tokenhub.store.providers import ProviderRepo
from tokenhub.types import ModelConfig, ProviderConfig

QWEN = "Qwen/Qwen2.5-Coder-32B-Instruct"


@pytest.fixture
async def repo(db: Database) -> ModelRepo:
    providers = ProviderRepo(db)
    await providers.upsert(ProviderConfig(id="vllm", type="vllm", base_urls=["http://h:1"]))
    await providers.upsert(ProviderConfig(id="oa", type="openai", base_urls=["https://o"]))
    return ModelRepo(db)


def _qwen(**kw: object) -> ModelConfig:
    base = {
        "id": QWEN,
        "provider_id": "vllm",
        "weight": 7,
        "max_context_tokens": 32768,
        "input_per_1k": 0.0001,
        "output_per_1k": 0.0002,
        "upstream_id": "qwen-coder",
        "labels": {"demo": True, "tags": ["code"]},
    }
    return ModelConfig(**{**base, **kw})  # type: ignore[arg-type]


async def test_id_with_slashes_round_trips(repo: ModelRepo) -> None:
    """A model id containing slashes is stored and found again with every field intact."""
    await repo.upsert(_qwen())
    assert await repo.get(QWEN) == _qwen()
    assert await repo.get("Qwen") is None


async def test_upsert_is_idempotent(repo: ModelRepo) -> None:
    """Upserting the same model twice leaves one identical row."""
    await repo.upsert(_qwen())
    await repo.upsert(_qwen())
    assert await repo.list() == [_qwen()]


async def test_upsert_updates_fields(repo: ModelRepo) -> None:
    """A second upsert with changed fields (even the provider) overwrites the row."""
    await repo.upsert(_qwen())
    changed = _qwen(
        provider_id="oa", weight=0, enabled=False, upstream_id=None, labels={}, input_per_1k=1.5
    )
    await repo.upsert(changed)
    assert await repo.get(QWEN) == changed


async def test_upsert_with_unknown_provider_raises_not_found(repo: ModelRepo) -> None:
    """A model whose provider is not stored is refused with NotFound naming the provider."""
    with pytest.raises(NotFound, match="'ghost'"):
        await repo.upsert(_qwen(provider_id="ghost"))
    assert await repo.list() == []


async def test_list_for_provider_filters_and_orders(repo: ModelRepo) -> None:
    """list_for_provider() returns only that provider's models, sorted by id."""
    await repo.upsert(_qwen())
    await repo.upsert(ModelConfig(id="gpt-4o", provider_id="oa"))
    await repo.upsert(ModelConfig(id="gpt-4o-mini", provider_id="oa"))
    assert [m.id for m in await repo.list_for_provider("oa")] == ["gpt-4o", "gpt-4o-mini"]
    assert [m.id for m in await repo.list_for_provider("vllm")] == [QWEN]
    assert [m.id for m in await repo.list()] == [QWEN, "gpt-4o", "gpt-4o-mini"]


async def test_deleting_a_provider_cascades_to_its_models(db: Database, repo: ModelRepo) -> None:
    """Deleting a provider removes its models and leaves other providers' models alone."""
    await repo.upsert(_qwen())
    await repo.upsert(ModelConfig(id="gpt-4o", provider_id="oa"))
    assert await ProviderRepo(db).delete("vllm") is True
    assert [m.id for m in await repo.list()] == ["gpt-4o"]


async def test_delete_reports_whether_a_row_went(repo: ModelRepo) -> None:
    """delete() is True for an existing model, then False."""
    await repo.upsert(_qwen())
    assert await repo.delete(QWEN) is True
    assert await repo.delete(QWEN) is False


async def test_concurrent_upserts_of_one_id_leave_one_row(repo: ModelRepo) -> None:
    """Twenty simultaneous upserts of the same model id end with exactly one row."""
    await asyncio.gather(*(repo.upsert(_qwen(weight=n % 11)) for n in range(20)))
    rows = await repo.list()
    assert len(rows) == 1
    assert rows[0].id == QWEN
