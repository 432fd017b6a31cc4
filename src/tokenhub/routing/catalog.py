"""The in-memory catalog of providers, their models and their live adapters.

The router reads it on every request, so lookups are plain dict reads. The admin API
and the store keep it current through the ``set_*`` and ``remove_*`` methods.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from tokenhub.providers.base import Adapter
from tokenhub.types import ModelConfig, ProviderConfig

CatalogAdapterFactory = Callable[[ProviderConfig], Adapter]
"""Builds the adapter for a provider (the app binds credentials in beforehand)."""


class Catalog:
    """Providers, models and one adapter per provider, keyed by id."""

    def __init__(self, adapter_factory: CatalogAdapterFactory, *, retire_after_s: float = 60.0):
        self._factory = adapter_factory
        self._retire_after_s = retire_after_s
        self._retiring: dict[asyncio.Task[None], Adapter] = {}
        self.providers: dict[str, ProviderConfig] = {}
        self.models: dict[str, ModelConfig] = {}
        self.adapters: dict[str, Adapter] = {}

    async def set_provider(self, cfg: ProviderConfig) -> Adapter:
        """Add or replace a provider; its old adapter is retired after the swap."""
        adapter = self._factory(cfg)
        old = self.adapters.get(cfg.id)
        self.providers[cfg.id] = cfg
        self.adapters[cfg.id] = adapter
        if old is not None and old is not adapter:
            self._retire(old)
        return adapter

    async def remove_provider(self, provider_id: str) -> None:
        """Remove a provider, every model it serves, and close its adapter."""
        self.providers.pop(provider_id, None)
        for model_id in [m.id for m in self.models.values() if m.provider_id == provider_id]:
            del self.models[model_id]
        adapter = self.adapters.pop(provider_id, None)
        if adapter is not None:
            self._retire(adapter)

    def set_model(self, model: ModelConfig) -> None:
        """Add or replace a model; ``ValueError`` if its provider is unknown."""
        if model.provider_id not in self.providers:
            raise ValueError(f"unknown provider '{model.provider_id}' for model '{model.id}'")
        self.models[model.id] = model

    def remove_model(self, model_id: str) -> None:
        """Remove a model (no error when it is absent)."""
        self.models.pop(model_id, None)

    def adapter(self, provider_id: str) -> Adapter | None:
        """The live adapter of a provider, or None."""
        return self.adapters.get(provider_id)

    def routable(self) -> list[ModelConfig]:
        """Enabled models whose provider exists and is enabled, in insertion order."""
        providers = self.providers
        return [
            m
            for m in self.models.values()
            if m.enabled and (p := providers.get(m.provider_id)) is not None and p.enabled
        ]

    def models_of(self, provider_id: str) -> list[ModelConfig]:
        """Every model of one provider, enabled or not."""
        return [m for m in self.models.values() if m.provider_id == provider_id]

    def find(self, hint: str) -> ModelConfig | None:
        """A model by id, else the first whose ``upstream_id`` equals ``hint``."""
        model = self.models.get(hint)
        if model is not None:
            return model
        return next((m for m in self.models.values() if m.upstream_id == hint), None)

    def _retire(self, adapter: Adapter) -> None:
        """Close a replaced adapter later: requests in flight may still be using it."""
        task = asyncio.create_task(self._close_later(adapter))
        self._retiring[task] = adapter
        task.add_done_callback(lambda t: self._retiring.pop(t, None))

    async def _close_later(self, adapter: Adapter) -> None:
        await asyncio.sleep(self._retire_after_s)
        await adapter.close()

    async def close(self) -> None:
        """Close every adapter, retiring ones included; the configuration stays."""
        adapters = list(self.adapters.values())
        self.adapters.clear()
        for task, retired in list(self._retiring.items()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            adapters.append(retired)
        for adapter in adapters:
            await adapter.close()
