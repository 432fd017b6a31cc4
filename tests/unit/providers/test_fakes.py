"""The fake upstreams themselves: scripting, recording, health and method checks."""

from __future__ import annotations

import aiohttp

from tests.fakes.upstreams import FakeAnthropic, FakeOpenAI, Reply


async def test_script_is_fifo_then_default(fake_openai: FakeOpenAI) -> None:
    """Scripted replies are used in order, then every request gets Reply()."""
    fake_openai.script(Reply(text="first"), Reply(status=500))
    url = fake_openai.base_url + "/v1/chat/completions"
    body = {"model": "m", "messages": []}
    async with aiohttp.ClientSession() as session:
        statuses = []
        texts = []
        for _ in range(3):
            async with session.post(url, json=body, headers={"X-Thing": "1"}) as resp:
                statuses.append(resp.status)
                data = await resp.json()
                if resp.status == 200:
                    texts.append(data["choices"][0]["message"]["content"])
    assert statuses == [200, 500, 200]
    assert texts == ["first", "Hello from fake"]
    assert [r.path for r in fake_openai.requests] == ["/v1/chat/completions"] * 3
    headers = fake_openai.requests[0].headers
    assert headers["x-thing"] == headers["X-Thing"] == headers.get("X-THING") == "1"
    assert "X-Thing" in headers and "x-thing" in dict(headers)
    assert fake_openai.requests[0].json == body


async def test_health_and_method_checks(fake_anthropic: FakeAnthropic) -> None:
    """GET /health follows health_status (unrecorded); GET /v1/messages is 405."""
    async with aiohttp.ClientSession() as session:
        async with session.get(fake_anthropic.base_url + "/health") as resp:
            assert resp.status == 200
        fake_anthropic.health_status = 503
        async with session.get(fake_anthropic.base_url + "/health") as resp:
            assert resp.status == 503
        async with session.get(fake_anthropic.base_url + "/v1/messages") as resp:
            assert resp.status == 405
    assert [r.path for r in fake_anthropic.requests] == ["/v1/messages"]


async def test_openai_stream_without_usage_option(fake_openai: FakeOpenAI) -> None:
    """Without stream_options.include_usage the fake sends no usage chunk."""
    body = {"model": "m", "messages": [], "stream": True}
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake_openai.base_url + "/v1/chat/completions", json=body) as resp,
    ):
        text = (await resp.read()).decode()
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert '"usage"' not in text
    assert text.endswith("data: [DONE]\n\n")
