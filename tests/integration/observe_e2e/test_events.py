"""GET /admin/v1/events on a running gateway: what two live subscribers see."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.fakes.upstreams import FakeOpenAI, Reply
from tests.integration.harness import Gateway, gateway_settings, run_gateway
from tests.integration.observe_e2e.helpers import chat, eventually, sse_events


@dataclass
class Subscriber:
    """One SSE client of the event stream, collecting every event it receives."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, g: Gateway) -> None:
        client = httpx.AsyncClient(base_url=g.url, headers=g.admin.headers, timeout=30)
        async with client as c, c.stream("GET", "/admin/v1/events") as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            async for kind, data in sse_events(r):
                if kind == ": connected":  # the bus subscription is open
                    self.connected.set()
                elif not kind.startswith(":"):
                    self.events.append((kind, data))

    def of(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [
            d for k, d in self.events if k == kind and all(d.get(f) == v for f, v in match.items())
        ]


async def test_two_subscribers_see_traffic_admin_and_health_events(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """Both subscribers get route_success, failover, route_error, admin_change and
    health_change; the gateway then stops promptly with both still connected."""
    fake_openai.script(*[Reply(status=500) for _ in range(3)])
    subs = [Subscriber(), Subscriber()]
    started = time.monotonic()
    async with run_gateway(gateway_settings(tmp_path, demo="false")) as g:
        tasks = [asyncio.create_task(s.run(g)) for s in subs]
        await asyncio.wait_for(asyncio.gather(*(s.connected.wait() for s in subs)), 5)
        await g.add_provider("a", "openai", fake_openai.base_url, api_key="k")
        await g.add_model("m-a", "a")
        failed = await chat(g, "m-a")  # three 500s: the provider turns degraded
        assert failed.status_code == 502
        ok = await chat(g, "m-a")
        assert ok.status_code == 200
        rid_failed, rid_ok = failed.headers["x-request-id"], ok.headers["x-request-id"]

        async def all_seen() -> bool:
            return all(s.of("route_success", request_id=rid_ok) for s in subs) and all(
                s.of("health_change", new_state="healthy") for s in subs
            )

        await eventually(all_seen)
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 5, "an open event stream held the shutdown up"
    await asyncio.wait_for(asyncio.gather(*tasks), 5)  # the streams ended with the gateway

    for s in subs:
        created = s.of("admin_change", action="provider.create", outcome="success")
        assert created and created[0]["resource"].endswith("a"), s.events
        assert len(s.of("failover", request_id=rid_failed, error_class="transient")) == 3
        error = s.of("route_error", request_id=rid_failed)
        assert error and error[0]["status"] == 502 and error[0]["model"] is None
        success = s.of("route_success", request_id=rid_ok)[0]
        assert (success["model"], success["provider"], success["status"]) == ("m-a", "a", 200)
        changes = [(d["old_state"], d["new_state"]) for d in s.of("health_change", provider="a")]
        assert changes == [("healthy", "degraded"), ("degraded", "healthy")]
    assert subs[0].events == subs[1].events
    assert time.monotonic() - started < 20
