"""The control plane: every change to providers, models and routing configuration.

Admin routes and start-up bootstrap go through here so that the store, the in-memory
catalog the router reads, and the credential seam always change together: the store
first (the source of truth), then the catalog (what the next request sees).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Any, Concatenate, ParamSpec, TypeVar

from tokenhub.credentials import CredentialsFile
from tokenhub.demo import DEMO_PROVIDER_ID, demo_models, demo_provider
from tokenhub.errors import BadRequest, NotFound, ProviderError, Unprocessable, UpstreamFailed
from tokenhub.providers.registry import ADAPTER_TYPES
from tokenhub.routing.catalog import Catalog
from tokenhub.routing.config import RoutingConfig
from tokenhub.routing.engine import RoutingEngine
from tokenhub.security.vault import Credentials, VaultLocked
from tokenhub.state.base import SharedState
from tokenhub.store.models import ModelRepo
from tokenhub.store.providers import ProviderRepo
from tokenhub.store.settings import SettingsRepo
from tokenhub.types import ModelConfig, ProviderConfig

log = logging.getLogger("tokenhub.control")

ROUTING_CONFIG_KEY = "routing_config"
Reload = Callable[[], Awaitable[None]]
DISCOVERED_WEIGHT = 5


P = ParamSpec("P")
R = TypeVar("R")


def _mutation(
    method: Callable[Concatenate[ControlPlane, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[ControlPlane, P], Coroutine[Any, Any, R]]:
    """Marks a local change, so that a concurrent ``sync`` never applies a stale read."""

    async def change(self: ControlPlane, /, *args: P.args, **kwargs: P.kwargs) -> R:
        self._changing += 1
        self._idle.clear()
        try:
            return await method(self, *args, **kwargs)
        finally:
            self._changing -= 1
            self._version += 1
            if not self._changing:
                self._idle.set()

    change.__name__, change.__doc__ = method.__name__, method.__doc__
    return change


class ControlPlane:
    def __init__(
        self,
        *,
        providers: ProviderRepo,
        models: ModelRepo,
        kv: SettingsRepo,
        catalog: Catalog,
        engine: RoutingEngine,
        credentials: Credentials,
    ) -> None:
        self.providers = providers
        self.models = models
        self.kv = kv
        self.catalog = catalog
        self.engine = engine
        self.credentials = credentials
        self._version = 0  # bumped after every local change (see ``sync``)
        self._changing = 0  # local changes in progress
        self._idle = asyncio.Event()
        self._idle.set()

    # -- start-up -------------------------------------------------------------------

    async def load(self) -> None:
        """Fill the catalog from the store and the routing config from its row."""
        stored = await self.kv.get(ROUTING_CONFIG_KEY)
        if stored:
            try:
                self.engine.config = RoutingConfig.from_dict(stored)
            except ValueError as exc:
                log.warning("stored routing config ignored: %s", exc)
        for p in await self.providers.list():
            await self.catalog.set_provider(p)
        for m in await self.models.list():
            if m.provider_id in self.catalog.providers:
                self.catalog.set_model(m)

    @_mutation
    async def import_credentials(self, creds: CredentialsFile) -> None:
        """Upsert what the credentials file declares (idempotent at every start)."""
        for key_owner, key in creds.api_keys.items():
            try:
                await self.credentials.put(key_owner, key)
            except VaultLocked:
                log.warning("vault locked: provider key for %s not imported this time", key_owner)
        for p in creds.providers:
            await self.providers.upsert(p)
            await self.catalog.set_provider(p)
        for m in creds.models:
            if m.provider_id not in self.catalog.providers:
                log.warning("credentials file: model %s names unknown provider", m.id)
                continue
            await self.models.upsert(m)
            self.catalog.set_model(m)
        for p in creds.providers:
            if p.autoload_models and p.enabled:
                try:
                    await self.discover(p.id, register=True)
                except UpstreamFailed as exc:
                    log.warning("model discovery for %s failed: %s", p.id, exc.message)

    async def register_demo_if_empty(self) -> bool:
        if self.catalog.providers:
            return False
        await self.catalog.set_provider(demo_provider())
        for m in demo_models():
            self.catalog.set_model(m)
        log.info("no provider configured: serving the demo mock models")
        return True

    # -- providers ------------------------------------------------------------------

    @_mutation
    async def put_provider(self, cfg: ProviderConfig, api_key: str | None) -> ProviderConfig:
        if cfg.type not in ADAPTER_TYPES:
            raise Unprocessable(
                f"type: unknown provider type {cfg.type!r} (one of {', '.join(ADAPTER_TYPES)})"
            )
        if cfg.id == DEMO_PROVIDER_ID:
            raise Unprocessable(f"id: {DEMO_PROVIDER_ID!r} is reserved for the demo provider")
        if api_key:
            await self.credentials.put(cfg.id, api_key)  # VaultLocked: 503, nothing changed
        await self.providers.upsert(cfg)
        await self._retire_demo()
        await self.catalog.set_provider(cfg)
        for m in await self.models.list_for_provider(cfg.id):
            self.catalog.set_model(m)
        return cfg

    @_mutation
    async def patch_provider(self, provider_id: str, changes: dict[str, Any]) -> ProviderConfig:
        current = await self.providers.get(provider_id)
        if current is None:
            raise NotFound(f"provider {provider_id!r} not found")
        api_key = changes.pop("api_key", None)
        if "base_url" in changes:
            changes["base_urls"] = _urls(changes.pop("base_url"))
        return await self.put_provider(replace(current, **changes), api_key)

    @_mutation
    async def delete_provider(self, provider_id: str) -> None:
        if not await self.providers.delete(provider_id):
            raise NotFound(f"provider {provider_id!r} not found")
        await self.credentials.drop(provider_id)
        await self.catalog.remove_provider(provider_id)

    @_mutation
    async def discover(self, provider_id: str, *, register: bool) -> dict[str, Any]:
        adapter = self.catalog.adapter(provider_id)
        if adapter is None:
            raise NotFound(f"provider {provider_id!r} not found")
        try:
            found = await adapter.list_models()
        except ProviderError as exc:
            raise UpstreamFailed(f"discovery failed: {exc.message}") from None
        added: list[str] = []
        if register:
            for mid in found:
                if mid in self.catalog.models:
                    continue
                model = ModelConfig(id=mid, provider_id=provider_id, weight=DISCOVERED_WEIGHT)
                await self.models.upsert(model)
                self.catalog.set_model(model)
                added.append(mid)
        return {"provider_id": provider_id, "models": found, "registered": added}

    # -- models ---------------------------------------------------------------------

    @_mutation
    async def put_model(self, model: ModelConfig) -> ModelConfig:
        if model.provider_id not in self.catalog.providers:
            raise Unprocessable(f"provider_id: unknown provider {model.provider_id!r}")
        if model.provider_id == DEMO_PROVIDER_ID:
            raise Unprocessable("provider_id: the demo provider's models are built in")
        await self.models.upsert(model)
        self.catalog.set_model(model)
        return model

    @_mutation
    async def patch_model(self, model_id: str, changes: dict[str, Any]) -> ModelConfig:
        current = await self.models.get(model_id)
        if current is None:
            raise NotFound(f"model {model_id!r} not found")
        return await self.put_model(replace(current, **changes))

    @_mutation
    async def delete_model(self, model_id: str) -> None:
        if not await self.models.delete(model_id):
            raise NotFound(f"model {model_id!r} not found")
        self.catalog.remove_model(model_id)

    # -- routing config -------------------------------------------------------------

    @_mutation
    async def put_routing_config(self, changes: dict[str, Any]) -> RoutingConfig:
        try:
            cfg = self.engine.config.updated(changes)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        await self.kv.put(ROUTING_CONFIG_KEY, cfg.to_dict())
        self.engine.config = cfg
        return cfg

    async def sync(self) -> None:
        """Bring the catalogue and routing config in line with the store: another replica
        changed them. Unchanged providers keep their adapters (and pooled connections).

        A change made here while the store was being read wins: the read is retried, so
        a sync never puts stale data back. Applying the read awaits no I/O.
        """
        while True:
            await self._idle.wait()
            version = self._version
            providers = {p.id: p for p in await self.providers.list()}
            models = {m.id: m for m in await self.models.list()}
            config = await self.kv.get(ROUTING_CONFIG_KEY)
            if version == self._version and not self._changing:
                break
        for pid in list(self.catalog.providers):
            if pid not in providers and pid != DEMO_PROVIDER_ID:
                await self.catalog.remove_provider(pid)
        for p in providers.values():
            if self.catalog.providers.get(p.id) != p:
                await self.catalog.set_provider(p)
        if providers:
            await self._retire_demo()
        for mid, m in list(self.catalog.models.items()):
            if mid not in models and m.provider_id != DEMO_PROVIDER_ID:
                self.catalog.remove_model(mid)
        for m in models.values():
            if m.provider_id in self.catalog.providers and self.catalog.models.get(m.id) != m:
                self.catalog.set_model(m)
        if config and config != self.engine.config.to_dict():
            with contextlib.suppress(ValueError):
                self.engine.config = RoutingConfig.from_dict(config)

    async def _retire_demo(self) -> None:
        """The demo models step aside as soon as a real provider exists."""
        if DEMO_PROVIDER_ID in self.catalog.providers:
            await self.catalog.remove_provider(DEMO_PROVIDER_ID)


class CatalogSync:
    """Keeps replicas' in-memory catalogues in step: a replica that changes the catalogue
    announces it on the shared state's ``catalog`` channel; every replica (itself
    included, harmlessly) then re-reads the store. In one process nothing travels."""

    CHANNEL = "catalog"

    def __init__(
        self, state: SharedState, control: ControlPlane, reload: Sequence[Reload] = ()
    ) -> None:
        self._state = state
        self._control = control
        self._reload = reload
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def announce(self) -> None:
        """Tell every replica (sync: called from the audit hook after a change)."""
        with contextlib.suppress(RuntimeError):
            task = asyncio.get_running_loop().create_task(
                self._state.publish(self.CHANNEL, b"changed")
            )
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def start(self) -> None:
        ready = asyncio.Event()
        self._task = asyncio.create_task(self._listen(ready))
        await ready.wait()

    async def _listen(self, ready: asyncio.Event) -> None:
        async with self._state.subscribe(self.CHANNEL) as messages:
            ready.set()
            async for _ in messages:
                try:
                    await self._control.sync()
                    for reload in self._reload:
                        await reload()
                except Exception:
                    log.warning("catalogue sync failed", exc_info=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _urls(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)
