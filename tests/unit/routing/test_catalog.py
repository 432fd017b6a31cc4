"""Catalog: providers, models, adapters and what is routable."""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.routing.fakes import ScriptedAdapter
from tokenhub.providers.base import Adapter
from tokenhub.routing.catalog import Catalog
from tokenhub.types import ModelConfig, ProviderConfig


@pytest.fixture
def catalog() -> Catalog:
    return Catalog(ScriptedAdapter, retire_after_s=0.05)


async def settle() -> None:
    """Let the retired adapters' grace period run out."""
    await asyncio.sleep(0.1)


async def test_set_provider_creates_an_adapter(catalog: Catalog) -> None:
    """set_provider builds the adapter through the factory and exposes it."""
    adapter = await catalog.set_provider(ProviderConfig(id="p", type="x"))
    assert catalog.adapter("p") is adapter and isinstance(adapter, Adapter)
    assert adapter.config.id == "p" and catalog.adapter("nope") is None


async def test_replacing_a_provider_closes_the_old_adapter(catalog: Catalog) -> None:
    """A replaced provider's old adapter is closed after a grace period; the new one is live."""
    old = await catalog.set_provider(ProviderConfig(id="p", type="x"))
    new = await catalog.set_provider(ProviderConfig(id="p", type="x", base_urls=["http://b"]))
    assert isinstance(old, ScriptedAdapter) and not old.closed  # in-flight calls may finish
    await settle()
    assert isinstance(old, ScriptedAdapter) and old.closed
    assert isinstance(new, ScriptedAdapter) and not new.closed
    assert catalog.providers["p"].base_url == "http://b"


async def test_remove_provider_removes_models_and_closes(catalog: Catalog) -> None:
    """Removing a provider drops its models and closes its adapter, leaving others alone."""
    a = await catalog.set_provider(ProviderConfig(id="a", type="x"))
    await catalog.set_provider(ProviderConfig(id="b", type="x"))
    catalog.set_model(ModelConfig(id="a1", provider_id="a"))
    catalog.set_model(ModelConfig(id="b1", provider_id="b"))
    await catalog.remove_provider("a")
    await settle()
    assert list(catalog.models) == ["b1"] and "a" not in catalog.providers
    assert isinstance(a, ScriptedAdapter) and a.closed


async def test_set_model_needs_a_known_provider(catalog: Catalog) -> None:
    """A model of an unknown provider is refused with ValueError."""
    with pytest.raises(ValueError, match="unknown provider 'ghost'"):
        catalog.set_model(ModelConfig(id="m", provider_id="ghost"))


async def test_routable_filters_disabled(catalog: Catalog) -> None:
    """Only enabled models of existing, enabled providers are routable."""
    await catalog.set_provider(ProviderConfig(id="on", type="x"))
    await catalog.set_provider(ProviderConfig(id="off", type="x", enabled=False))
    catalog.set_model(ModelConfig(id="good", provider_id="on"))
    catalog.set_model(ModelConfig(id="disabled", provider_id="on", enabled=False))
    catalog.set_model(ModelConfig(id="orphaned", provider_id="off"))
    assert [m.id for m in catalog.routable()] == ["good"]
    catalog.remove_model("good")
    catalog.remove_model("never-there")
    assert catalog.routable() == []


async def test_find_by_id_then_upstream_id(catalog: Catalog) -> None:
    """find() matches the id first, then the provider's own model name."""
    await catalog.set_provider(ProviderConfig(id="p", type="x"))
    catalog.set_model(ModelConfig(id="fast", provider_id="p", upstream_id="gpt-4o-mini"))
    catalog.set_model(ModelConfig(id="gpt-4o-mini", provider_id="p"))
    assert catalog.find("gpt-4o-mini").id == "gpt-4o-mini"  # type: ignore[union-attr]
    catalog.remove_model("gpt-4o-mini")
    assert catalog.find("gpt-4o-mini").id == "fast"  # type: ignore[union-attr]
    assert catalog.find("unknown") is None


async def test_close_closes_every_adapter(catalog: Catalog) -> None:
    """close() closes all adapters."""
    a = await catalog.set_provider(ProviderConfig(id="a", type="x"))
    b = await catalog.set_provider(ProviderConfig(id="b", type="x"))
    c = await catalog.set_provider(ProviderConfig(id="a", type="x"))  # a is retiring
    await catalog.close()
    assert isinstance(a, ScriptedAdapter) and isinstance(b, ScriptedAdapter)
    assert isinstance(c, ScriptedAdapter) and a.closed and c.closed
    assert a.closed and b.closed and catalog.adapters == {}
