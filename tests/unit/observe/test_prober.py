"""Prober: real probes against loopback fake providers that go up and down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from tests.fakes.upstreams import FakeAnthropic, FakeOpenAI
from tokenhub.observe.health import HealthTracker
from tokenhub.observe.prober import Prober, endpoint_key
from tokenhub.types import ProviderConfig

KEY = "sk-probe-SECRET-123"


@dataclass
class Providers:
    """The slice of the catalog the prober reads."""

    providers: dict[str, ProviderConfig] = field(default_factory=dict)

    def add(self, pid: str, ptype: str, *urls: str, enabled: bool = True) -> None:
        self.providers[pid] = ProviderConfig(pid, ptype, list(urls), enabled=enabled)


@pytest.fixture
async def oai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as up:
        yield up


@pytest.fixture
async def ant() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as up:
        yield up


@pytest.fixture
async def prober_env() -> AsyncIterator[tuple[Providers, HealthTracker, Prober]]:
    catalog = Providers()
    health = HealthTracker(degraded_after=2, down_after=3)
    prober = Prober(catalog, health, {"oai": KEY, "ant": KEY}.get, timeout_s=2)
    yield catalog, health, prober
    await prober.stop()


Env = tuple[Providers, HealthTracker, Prober]


async def test_openai_probe_lists_models_with_bearer_key(oai: FakeOpenAI, prober_env: Env) -> None:
    """An OpenAI provider is probed with GET /v1/models and its key; 2xx is up."""
    catalog, health, prober = prober_env
    catalog.add("oai", "openai", oai.base_url)
    assert await prober.probe_once() == {"oai": True}
    assert [r.path for r in oai.requests] == ["/v1/models"]
    assert oai.requests[0].headers["Authorization"] == f"Bearer {KEY}"
    h = health.state("oai")
    assert (h.state, h.requests, h.errors) == ("healthy", 1, 0)
    assert h.latency_ema_ms is not None and h.latency_ema_ms >= 0


async def test_anthropic_probe_accepts_405_and_sends_version(
    ant: FakeAnthropic, prober_env: Env
) -> None:
    """An Anthropic provider is up when GET /v1/messages answers 405 (POST-only route)."""
    catalog, health, prober = prober_env
    catalog.add("ant", "anthropic", ant.base_url)
    assert await prober.probe_once() == {"ant": True}
    req = ant.requests[0]
    assert req.path == "/v1/messages"
    assert req.headers["x-api-key"] == KEY and req.headers["anthropic-version"]
    assert health.state("ant").state == "healthy"


async def test_vllm_endpoints_tracked_one_by_one(prober_env: Env) -> None:
    """vLLM: GET /health per endpoint, each its own key; the provider is up while any is."""
    catalog, health, prober = prober_env
    async with FakeOpenAI() as a, FakeOpenAI() as b:
        catalog.add("vl", "vllm", a.base_url, b.base_url + "/v1")
        b.health_status = 503
        result = await prober.probe_once()
        ka, kb = endpoint_key("vl", a.base_url), endpoint_key("vl", b.base_url + "/v1")
        assert result == {ka: True, kb: False, "vl": True}
        assert health.state(kb).last_error == "probe: HTTP 503"
        a.health_status = 500
        assert (await prober.probe_once())["vl"] is False
        assert health.state("vl").last_error_class == "transient"


async def test_provider_going_down_and_up_moves_through_the_states(
    oai: FakeOpenAI, prober_env: Env
) -> None:
    """Failing probes degrade then trip the provider; one good probe makes it healthy."""
    catalog, health, prober = prober_env
    catalog.add("oai", "openai", oai.base_url)
    states = []
    for status in (500, 500, 500):
        _set_models_status(oai, status)
        await prober.probe_once()
        states.append(health.state("oai").state)
    assert states == ["healthy", "degraded", "down"]
    assert not health.is_available("oai") and health.cooldown_remaining("oai") > 0
    _set_models_status(oai, 200)
    await prober.probe_once()
    assert health.state("oai").state == "healthy" and health.is_available("oai")


def _set_models_status(up: FakeOpenAI, status: int) -> None:
    # The fake answers /v1/models with 200 always; swap in a body getter that fails.
    def body() -> object:
        if status != 200:
            raise web.HTTPInternalServerError()
        return {"object": "list", "data": []}

    up.models_body = body  # type: ignore[method-assign]


async def test_stopped_server_is_down_and_message_has_no_secret(prober_env: Env) -> None:
    """A stopped server fails the probe; the message names no URL, credential or key."""
    catalog, health, prober = prober_env
    up = FakeOpenAI()
    await up.start()
    url = up.base_url.replace("http://", "http://user:pw-SECRET@")
    await up.stop()
    catalog.add("oai", "openai", url)
    assert await prober.probe_once() == {"oai": False}
    message = health.state("oai").last_error or ""
    assert message.startswith("probe: connection failed")
    assert "SECRET" not in message and "127.0.0.1" not in message


async def test_slow_provider_times_out(prober_env: Env) -> None:
    """A provider slower than the timeout counts as a failed probe."""
    catalog, health, _ = prober_env

    async def hang(_: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/v1/models", hang)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    prober = Prober(catalog, health, lambda _: None, timeout_s=0.2)
    try:
        catalog.add("slow", "openai", f"http://127.0.0.1:{port}")
        assert await prober.probe_once() == {"slow": False}
        assert health.state("slow").last_error == "probe: timed out"
    finally:
        await prober.stop()
        await runner.cleanup()


async def test_runtime_changes_are_picked_up_next_round(
    oai: FakeOpenAI, ant: FakeAnthropic, prober_env: Env
) -> None:
    """A provider added later is probed next round; a removed one is forgotten."""
    catalog, health, prober = prober_env
    catalog.add("oai", "openai", oai.base_url)
    catalog.add("vl", "vllm", oai.base_url)
    await prober.probe_once()
    assert health.keys() == sorted(["oai", "vl", endpoint_key("vl", oai.base_url)])
    catalog.add("ant", "anthropic", ant.base_url)
    del catalog.providers["vl"]
    assert await prober.probe_once() == {"oai": True, "ant": True}
    assert health.keys() == ["ant", "oai"]


async def test_disabled_and_mock_providers_are_not_probed(oai: FakeOpenAI, prober_env: Env) -> None:
    """Disabled providers and in-process mock providers get no probe."""
    catalog, health, prober = prober_env
    catalog.add("off", "openai", oai.base_url, enabled=False)
    catalog.add("mock", "mock")
    assert await prober.probe_once() == {}
    assert oai.requests == [] and health.keys() == []


async def test_all_providers_are_probed_concurrently(prober_env: Env) -> None:
    """Three slow providers take about one probe's time, not three."""
    catalog, health, _ = prober_env

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return web.json_response({"data": []})

    app = web.Application()
    app.router.add_get("/v1/models", slow)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    prober = Prober(catalog, health, lambda _: None, timeout_s=2)
    try:
        for pid in ("a", "b", "c"):
            catalog.add(pid, "openai", base)
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert await prober.probe_once() == {"a": True, "b": True, "c": True}
        assert loop.time() - start < 0.8
    finally:
        await prober.stop()
        await runner.cleanup()


async def test_background_task_probes_on_an_interval_and_stops(oai: FakeOpenAI) -> None:
    """start() probes every interval until stop(); stop is idempotent."""
    catalog = Providers()
    catalog.add("oai", "openai", oai.base_url)
    health = HealthTracker()
    prober = Prober(catalog, health, lambda _: None, interval_s=0.02, timeout_s=1)
    await prober.start()
    await prober.start()  # already running: no second task
    for _ in range(200):
        if prober.rounds >= 3:
            break
        await asyncio.sleep(0.01)
    await prober.stop()
    await prober.stop()
    rounds = prober.rounds
    assert rounds >= 3 and health.state("oai").requests == rounds
    await asyncio.sleep(0.06)
    assert prober.rounds == rounds


async def test_probe_feeds_health_listeners(oai: FakeOpenAI, prober_env: Env) -> None:
    """Probe results reach tracker listeners, so health_change events can follow."""
    catalog, health, prober = prober_env
    heard: list[tuple[str, str, str]] = []
    health.add_listener(lambda *change: heard.append(change))
    catalog.add("oai", "openai", oai.base_url)
    await oai.stop()
    await prober.probe_once()
    await prober.probe_once()
    assert heard == [("oai", "healthy", "degraded")]


def test_bad_intervals_are_refused() -> None:
    """A zero interval or timeout is a configuration error."""
    with pytest.raises(ValueError):
        Prober(Providers(), HealthTracker(), lambda _: None, interval_s=0)
