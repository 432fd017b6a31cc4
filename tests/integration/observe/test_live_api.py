"""Live routes over a real loopback socket: /metrics, /admin/v1/health, /admin/v1/events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port
from tests.fakes.upstreams import FakeAnthropic, FakeOpenAI
from tests.unit.routing.fakes import FakeClock
from tokenhub.api.admin_live import LiveBundle, live_router, metrics_router
from tokenhub.api.errors import install_error_handlers
from tokenhub.observe.events import EventBus, EventSink, health_listener
from tokenhub.observe.health import HealthTracker
from tokenhub.observe.metrics import Metrics, MetricsSink
from tokenhub.observe.prober import Prober
from tokenhub.observe.recorder import Recorder
from tokenhub.state.memory import MemoryState
from tokenhub.types import (
    Attempt,
    Decision,
    ErrorClass,
    ModelConfig,
    Outcome,
    ProviderConfig,
    Usage,
)

WALL = 1_700_000_000.0
SECRET = "sk-live-SECRET-0042"


@dataclass
class Catalog:
    providers: dict[str, ProviderConfig] = field(default_factory=dict)
    models: dict[str, ModelConfig] = field(default_factory=dict)


def make_app(bundle: LiveBundle) -> FastAPI:
    """Both routers behind the error handlers app.py installs."""
    api = FastAPI()
    install_error_handlers(api)

    api.include_router(metrics_router(lambda: bundle))
    api.include_router(live_router(lambda: bundle))
    return api


@dataclass
class Live:
    url: str
    client: httpx.AsyncClient
    bundle: LiveBundle
    catalog: Catalog
    clock: FakeClock


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, loop="none")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    clock = FakeClock()
    catalog = Catalog()
    health = HealthTracker(clock=clock, degraded_after=1, down_after=2, cooldown_s=30)
    bus = EventBus(MemoryState(), heartbeat_s=0.2)
    health.add_listener(health_listener(bus))
    bundle = LiveBundle(Metrics(catalog=catalog, health=health), bus, health, catalog, lambda: WALL)
    async with serve(make_app(bundle)) as url, httpx.AsyncClient(base_url=url, timeout=5) as c:
        yield Live(url, c, bundle, catalog, clock)
    await bus.stop()


async def frames(response: httpx.Response) -> AsyncIterator[bytes]:
    """Whole SSE frames (comments included) from a streamed response."""
    buffer = b""
    async for chunk in response.aiter_bytes():
        buffer += chunk
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            yield frame + b"\n\n"


async def next_event(it: AsyncIterator[bytes]) -> tuple[str, dict[str, Any]]:
    """The next event frame, skipping heartbeat comments."""
    async with asyncio.timeout(3):
        async for frame in it:
            if frame.startswith(b":"):
                continue
            head, data = frame.decode().strip().split("\n")
            return head.removeprefix("event: "), orjson.loads(data.removeprefix("data: "))
    raise AssertionError("stream ended")


async def wait_for(predicate: Any) -> None:
    for _ in range(300):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


def outcome(**kw: Any) -> Outcome:
    base: dict[str, Any] = {
        "request_id": "r1",
        "surface": "openai",
        "started_at": WALL,
        "status": 200,
        "latency_ms": 25.0,
        "model": "m1",
        "provider": "oai",
        "usage": Usage(12, 8),
        "cost_usd": 0.002,
    }
    base.update(kw)
    return Outcome(**base)


def scrape_text(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_endpoint_reflects_recorded_outcomes(live: Live) -> None:
    """Outcomes through the recorder's metrics sink show up in GET /metrics."""
    live.catalog.providers["oai"] = ProviderConfig("oai", "openai", ["http://x"])
    live.catalog.models["m1"] = ModelConfig("m1", "oai")
    recorder = Recorder([MetricsSink(live.bundle.metrics)], flush_interval_s=0.01)
    live.bundle.metrics.bind_recorder(lambda: recorder.queue_depth, lambda: recorder.dropped)
    await recorder.start()
    failed = Decision(attempts=[Attempt("m0", "gone", ErrorClass.TRANSIENT), Attempt("m1", "oai")])
    recorder.record(outcome(decision=failed))
    recorder.record(outcome(status=429, model="client-junk", stream=True, ttft_ms=30.0))
    await recorder.stop()
    live.bundle.metrics.in_flight_inc()
    r = await live.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    s = scrape_text(r.text)
    ok = frozenset({"mode": "normal", "model": "m1", "provider": "oai", "status": "200"}.items())
    junk = frozenset(
        {"mode": "normal", "model": "other", "provider": "oai", "status": "429"}.items()
    )
    assert s[("tokenhub_requests_total", ok)] == 1
    assert s[("tokenhub_requests_total", junk)] == 1
    pair = frozenset({"model": "m1", "provider": "oai"}.items())
    assert s[("tokenhub_cost_usd_total", pair)] == 0.002
    assert s[("tokenhub_input_tokens_total", pair)] == 12
    assert s[("tokenhub_failovers_total", frozenset({("error_class", "transient")}))] == 1
    assert s[("tokenhub_requests_in_flight", frozenset())] == 1
    assert s[("tokenhub_recorder_queue_depth", frozenset())] == 0
    assert s[("tokenhub_provider_health_state", frozenset({("provider", "oai")}))] == 0
    assert "client-junk" not in r.text


async def test_health_lists_every_provider_with_cooldowns(live: Live) -> None:
    """GET /admin/v1/health shows each provider, cooldowns in force and when they end."""
    live.catalog.providers["a"] = ProviderConfig("a", "openai", ["http://a"])
    live.catalog.providers["b"] = ProviderConfig("b", "anthropic", ["http://b"])
    live.bundle.health.cool_down("b", 12.5, "rate limited (429)")
    body = (await live.client.get("/admin/v1/health")).json()
    assert body["checked_at"].startswith("2023-11-14T22:13:20")
    a, b = body["providers"]
    assert (a["id"], a["state"], a["cooldown"], a["cooldown_until"]) == (
        "a",
        "healthy",
        False,
        None,
    )
    assert (b["id"], b["available"], b["cooldown"]) == ("b", False, True)
    assert b["cooldown_remaining_s"] == 12.5 and b["cooldown_reason"] == "rate limited (429)"
    until = datetime.fromisoformat(b["cooldown_until"]).timestamp()
    assert until == pytest.approx(WALL + 12.5)
    live.clock.advance(13)
    b = (await live.client.get("/admin/v1/health")).json()["providers"][1]
    assert (b["available"], b["cooldown"], b["cooldown_until"]) == (True, False, None)


async def test_prober_against_fakes_going_up_and_down(live: Live) -> None:
    """Probes of loopback fakes drive the health view: down with a cooldown, then back up."""
    oai, ant, vl = FakeOpenAI(), FakeAnthropic(), FakeOpenAI()
    for up in (oai, ant, vl):
        await up.start()
    cat, health = live.catalog, live.bundle.health
    cat.providers["oai"] = ProviderConfig("oai", "openai", [oai.base_url])
    cat.providers["ant"] = ProviderConfig("ant", "anthropic", [ant.base_url])
    cat.providers["vl"] = ProviderConfig("vl", "vllm", [vl.base_url])
    prober = Prober(cat, health, {"oai": SECRET, "ant": SECRET}.get, timeout_s=2)
    try:
        await prober.probe_once()
        await ant.stop()  # a stopped server is down
        vl.health_status = 503
        await prober.probe_once()
        await prober.probe_once()
        view = {p["id"]: p for p in (await live.client.get("/admin/v1/health")).json()["providers"]}
        assert view["oai"]["state"] == "healthy"
        assert view["ant"]["state"] == "down" and view["ant"]["cooldown"] is True
        assert view["ant"]["cooldown_until"] is not None
        assert view["ant"]["last_error"].startswith("probe: connection failed")
        assert view["vl"]["state"] == "down"
        assert view["vl"]["endpoints"][0]["url"] == vl.base_url
        assert view["vl"]["endpoints"][0]["last_error"] == "probe: HTTP 503"
        vl.health_status = 200
        await prober.probe_once()
        view = {p["id"]: p for p in (await live.client.get("/admin/v1/health")).json()["providers"]}
        assert view["vl"]["state"] == "healthy" and view["vl"]["cooldown"] is False
        metrics = (await live.client.get("/metrics")).text
        states = scrape_text(metrics)
        assert states[("tokenhub_provider_health_state", frozenset({("provider", "ant")}))] == 2
        for text in (metrics, (await live.client.get("/admin/v1/health")).text):
            assert SECRET not in text
    finally:
        await prober.stop()
        for up in (oai, vl):
            await up.stop()


async def test_two_sse_subscribers_receive_the_same_events(live: Live) -> None:
    """Two real HTTP clients on /admin/v1/events both get every event, in order."""
    bus = live.bundle.events
    async with (
        httpx.AsyncClient(base_url=live.url, timeout=5) as c1,
        httpx.AsyncClient(base_url=live.url, timeout=5) as c2,
        c1.stream("GET", "/admin/v1/events") as r1,
        c2.stream("GET", "/admin/v1/events") as r2,
    ):
        assert r1.headers["content-type"].startswith("text/event-stream")
        it1, it2 = frames(r1), frames(r2)
        assert await anext(it1) == b": connected\n\n"
        assert await anext(it2) == b": connected\n\n"
        sink = EventSink(bus)
        attempts = [Attempt("m0", "p0", ErrorClass.RATE_LIMITED, 429), Attempt("m1", "oai")]
        await sink.write([outcome(decision=Decision(attempts=attempts))])
        bus.publish("admin_change", action="provider.put", provider="oai")
        for it in (it1, it2):
            got = [await next_event(it) for _ in range(3)]
            assert [k for k, _ in got] == ["failover", "route_success", "admin_change"]
            assert got[0][1]["error_class"] == "rate_limited"
            assert (got[1][1]["model"], got[1][1]["cost_usd"]) == ("m1", 0.002)
        assert bus.subscribers == 2
    await wait_for(lambda: bus.subscribers == 0)  # disconnects end the streams cleanly


async def test_sse_heartbeats_and_health_change_events(live: Live) -> None:
    """An idle stream gets heartbeats; a provider going down arrives as health_change."""
    async with live.client.stream("GET", "/admin/v1/events?types=health_change") as r:
        it = frames(r)
        assert await anext(it) == b": connected\n\n"
        async with asyncio.timeout(2):
            assert await anext(it) == b": heartbeat\n\n"
        live.bundle.events.publish("route_success", model="m1")  # filtered out
        live.bundle.health.record_failure("oai", ErrorClass.TRANSIENT, "probe: HTTP 500")
        kind, data = await next_event(it)
        assert kind == "health_change"
        assert (data["provider"], data["old_state"], data["new_state"]) == (
            "oai",
            "healthy",
            "degraded",
        )
    await wait_for(lambda: live.bundle.events.subscribers == 0)


async def test_bad_event_type_filter_is_a_400(live: Live) -> None:
    """A types filter with nothing in it is refused with an OpenAI-style error body."""
    r = await live.client.get("/admin/v1/events", params={"types": " , "})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
