"""Provider health on a running gateway: failures trip the breaker, routing avoids it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.upstreams import FakeOpenAI, Reply
from tests.integration.harness import Gateway, gateway_settings, run_gateway
from tests.integration.observe_e2e.helpers import chat, eventually


@pytest.fixture
async def second_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


async def _setup(g: Gateway, a_url: str, b_url: str) -> None:
    await g.add_provider("a", "openai", a_url, api_key="k")
    await g.add_provider("b", "openai", b_url, api_key="k")
    await g.add_model("m-a", "a", weight=9)
    await g.add_model("m-b", "b", weight=3)


async def _health(g: Gateway) -> dict[str, dict[str, Any]]:
    r = await g.admin.get("/admin/v1/health")
    assert r.status_code == 200, r.text
    return {p["id"]: p for p in r.json()["providers"]}


async def _trace(g: Gateway, rid: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        r = await g.admin.get(f"/admin/v1/logs/{rid}")
        return dict(r.json()["trace"]) if r.status_code == 200 else None

    return await eventually(found)


async def test_stopped_upstream_goes_degraded_then_down_and_is_avoided(
    tmp_path: Path, fake_openai: FakeOpenAI, second_openai: FakeOpenAI
) -> None:
    """A provider whose upstream is gone degrades, then goes down with a cooldown shown
    by /admin/v1/health, and later requests skip it without an attempt."""
    async with run_gateway(gateway_settings(tmp_path, demo="false")) as g:
        await _setup(g, fake_openai.base_url, second_openai.base_url)
        await fake_openai.stop()
        first = await chat(g, "m-a")  # three refused connections: degraded
        assert first.status_code == 200 and first.headers["x-tokenhub-model"] == "m-b"
        a = (await _health(g))["a"]
        assert (a["state"], a["available"], a["cooldown_until"]) == ("degraded", True, None)
        assert a["last_error_class"] == "transient"

        second = await chat(g, "m-a")  # two more: down
        assert second.headers["x-tokenhub-model"] == "m-b"
        health = await _health(g)
        a, b = health["a"], health["b"]
        assert (a["state"], a["available"], a["cooldown"]) == ("down", False, True)
        assert a["cooldown_until"] is not None and 0 < a["cooldown_remaining_s"] <= 30
        assert a["consecutive_errors"] == 5
        assert (b["state"], b["available"]) == ("healthy", True)

        served = len(second_openai.requests)
        third = await chat(g, "m-a")
        assert third.headers["x-tokenhub-model"] == "m-b"
        assert len(second_openai.requests) == served + 1
        trace = await _trace(g, third.headers["x-request-id"])
        assert [a["provider"] for a in trace["attempts"]] == ["b"]
        why = {e["model"]: e["reason"] for e in trace["excluded"]}["m-a"]
        assert why.startswith("provider a unavailable (circuit open)"), why
        assert [c["provider"] for c in trace["cooldowns"]] == ["a"]


async def test_failing_upstream_gets_no_request_once_down(
    tmp_path: Path, fake_openai: FakeOpenAI, second_openai: FakeOpenAI
) -> None:
    """Once 500s have taken a provider down, its upstream receives nothing more while
    traffic flows to the other provider; the health gauge says so too."""
    fake_openai.script(*[Reply(status=500) for _ in range(10)])
    async with run_gateway(gateway_settings(tmp_path, demo="false")) as g:
        await _setup(g, fake_openai.base_url, second_openai.base_url)
        for _ in range(2):
            assert (await chat(g, "m-a")).headers["x-tokenhub-model"] == "m-b"
        assert len(fake_openai.requests) == 5
        assert (await _health(g))["a"]["state"] == "down"
        for _ in range(3):
            r = await chat(g, "m-a")
            assert r.status_code == 200 and r.headers["x-tokenhub-model"] == "m-b"
        assert len(fake_openai.requests) == 5
        assert len(second_openai.requests) == 5
        metrics = (await g.admin.get("/metrics")).text
        assert 'tokenhub_provider_health_state{provider="a"} 2.0' in metrics
        assert 'tokenhub_provider_health_state{provider="b"} 0.0' in metrics
