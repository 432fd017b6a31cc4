"""The active prober: checks every provider on an interval and feeds the health tracker.

Each round reads the catalog afresh, so providers added or removed at runtime are
probed or dropped without a restart; tracker entries of providers (or vLLM endpoints)
that are gone are forgotten. All providers are probed concurrently, each request bounded
by a timeout. What a probe asks depends on the provider type (``PROBES``):

    openai     GET {base}/v1/models          2xx
    anthropic  GET {base}/v1/messages        2xx or 405 (the route exists, GET does not)
    vllm       GET {endpoint}/health         2xx, per endpoint, tracked as "id@endpoint";
                                             the provider is up when any endpoint is
    mock       not probed (in-process, nothing can be down)

A success is recorded with its latency; a failure as a transient error whose message
names only the status or the kind of failure (never a URL, header or key).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from tokenhub.observe.health import HealthTracker
from tokenhub.providers import anthropic, openai
from tokenhub.providers.base import CredentialLookup
from tokenhub.providers.http import api_url
from tokenhub.types import Clock, ErrorClass, ProviderConfig, monotonic

log = logging.getLogger("tokenhub.prober")

Sleep = Callable[[float], Awaitable[None]]
SessionFactory = Callable[[], aiohttp.ClientSession]


class ProviderSource(Protocol):
    """Where the prober finds the providers of this round (``Catalog`` fits)."""

    @property
    def providers(self) -> Mapping[str, ProviderConfig]: ...


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """How to probe one provider type.

    ``targets`` gives ``(endpoint, probe url)`` pairs; ``per_endpoint`` tracks each
    endpoint under its own key as well as the provider's.
    """

    targets: Callable[[ProviderConfig], list[tuple[str, str]]]
    auth: Callable[[str | None], dict[str, str]]
    accept: frozenset[int] = frozenset()
    per_endpoint: bool = False


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    latency_ms: float
    message: str


def _bearer(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def _anthropic_auth(key: str | None) -> dict[str, str]:
    headers = {"anthropic-version": anthropic.API_VERSION}
    return {**headers, "x-api-key": key} if key else headers


def _server_root(base: str) -> str:
    """vLLM serves ``/health`` at the root, also when the base URL ends with ``/v1``."""
    base = base.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


PROBES: Mapping[str, ProbeSpec] = {
    "openai": ProbeSpec(
        targets=lambda c: [(c.base_url, api_url(c.base_url or openai.DEFAULT_BASE_URL, "/models"))],
        auth=_bearer,
    ),
    "anthropic": ProbeSpec(
        targets=lambda c: [
            (c.base_url, api_url(c.base_url or anthropic.DEFAULT_BASE_URL, "/messages"))
        ],
        auth=_anthropic_auth,
        accept=frozenset({405}),
    ),
    "vllm": ProbeSpec(
        targets=lambda c: [(b, _server_root(b) + "/health") for b in c.base_urls],
        auth=_bearer,
        per_endpoint=True,
    ),
}
"""Probe recipes by provider type; a type without one (mock) is not probed."""


def endpoint_key(provider_id: str, endpoint: str) -> str:
    """The health key of one endpoint of a provider."""
    return f"{provider_id}@{endpoint}"


class Prober:
    """Probes every provider of the catalog each ``interval_s`` seconds (``start``)."""

    def __init__(
        self,
        catalog: ProviderSource,
        health: HealthTracker,
        credentials: CredentialLookup,
        *,
        interval_s: float = 30.0,
        timeout_s: float = 10.0,
        clock: Clock = monotonic,
        sleep: Sleep = asyncio.sleep,
        session_factory: SessionFactory | None = None,
    ) -> None:
        if interval_s <= 0 or timeout_s <= 0:
            raise ValueError("need interval_s > 0 and timeout_s > 0")
        self._catalog = catalog
        self._health = health
        self._credentials = credentials
        self._interval_s = interval_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock = clock
        self._sleep = sleep
        self._session_factory = session_factory or _default_session
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Probe now and then every ``interval_s`` seconds, in a background task."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="tokenhub-prober")

    async def stop(self) -> None:
        """Stop probing and close the HTTP session (idempotent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            try:
                await self.probe_once()
            except Exception:
                log.exception("probe round failed")
            await self._sleep(self._interval_s)

    # -- one round -----------------------------------------------------------------

    async def probe_once(self) -> dict[str, bool]:
        """Probe every enabled provider once, concurrently; returns key -> up."""
        providers = list(self._catalog.providers.values())
        self._forget_gone(providers)
        jobs = [
            self._probe_provider(p, spec)
            for p in providers
            if p.enabled and (spec := PROBES.get(p.type)) is not None
        ]
        results: dict[str, bool] = {}
        for found in await asyncio.gather(*jobs):
            results.update(found)
        self.rounds += 1
        return results

    def _forget_gone(self, providers: list[ProviderConfig]) -> None:
        live = {p.id for p in providers}
        live.update(endpoint_key(p.id, b) for p in providers for b in p.base_urls)
        for key in set(self._health.keys()) - live:
            self._health.forget(key)

    async def _probe_provider(self, cfg: ProviderConfig, spec: ProbeSpec) -> dict[str, bool]:
        headers = spec.auth(self._credentials(cfg.id))
        targets = spec.targets(cfg)
        if not targets:
            return {}
        checks = await asyncio.gather(*(self._check(url, headers, spec) for _, url in targets))
        found: dict[str, bool] = {}
        if spec.per_endpoint:
            for (endpoint, _), result in zip(targets, checks, strict=True):
                key = endpoint_key(cfg.id, endpoint)
                self._record(key, result)
                found[key] = result.ok
        up = [r for r in checks if r.ok]
        overall = min(up, key=lambda r: r.latency_ms) if up else checks[0]
        self._record(cfg.id, overall)
        found[cfg.id] = overall.ok
        return found

    def _record(self, key: str, result: ProbeResult) -> None:
        if result.ok:
            self._health.record_success(key, result.latency_ms)
        else:
            self._health.record_failure(key, ErrorClass.TRANSIENT, result.message)

    async def _check(self, url: str, headers: dict[str, str], spec: ProbeSpec) -> ProbeResult:
        started = self._clock()
        try:
            status = await self._status(url, headers)
        except TimeoutError:
            return ProbeResult(False, 0.0, "probe: timed out")
        except Exception as exc:
            # Only the exception's kind: its text may quote the URL, credentials included.
            return ProbeResult(False, 0.0, f"probe: connection failed ({type(exc).__name__})")
        latency_ms = (self._clock() - started) * 1000.0
        ok = 200 <= status < 300 or status in spec.accept
        return ProbeResult(ok, latency_ms, "" if ok else f"probe: HTTP {status}")

    async def _status(self, url: str, headers: dict[str, str]) -> int:
        if self._session is None or self._session.closed:
            self._session = self._session_factory()
        async with self._session.get(
            url, headers=headers, timeout=self._timeout, allow_redirects=False
        ) as resp:
            return resp.status


def _default_session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=64, ttl_dns_cache=300)
    return aiohttp.ClientSession(connector=connector, trust_env=False)
