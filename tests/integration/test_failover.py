"""Failover over real sockets: the gateway in front of misbehaving fake providers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.conftest import free_port
from tests.fakes.upstreams import FakeAnthropic, FakeOpenAI, Reply
from tests.integration.harness import Gateway, gateway_settings, run_gateway

MSG = [{"role": "user", "content": "hello"}]


@pytest.fixture
async def second_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


def client(g: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=g.v1, api_key=g.api_key, max_retries=0)


async def test_transient_then_success_retries_same_model(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """A 500 followed by success is retried on the same model (retried-transient)."""
    fake_openai.script(Reply(status=500), Reply(text="recovered"))
    async with run_gateway(gateway_settings(tmp_path, demo="false")) as g:
        await g.add_provider("a", "openai", fake_openai.base_url, api_key="k")
        await g.add_model("m-a", "a", weight=5)
        raw = await client(g).chat.completions.with_raw_response.create(model="m-a", messages=MSG)
        assert raw.parse().choices[0].message.content == "recovered"
        assert raw.headers["x-tokenhub-reason"] == "retried-transient"
        assert len(fake_openai.requests) == 2


async def test_rate_limited_provider_is_avoided_until_retry_after(
    tmp_path: Path, fake_openai: FakeOpenAI, second_openai: FakeOpenAI
) -> None:
    """A 429 with Retry-After moves to another provider and keeps away from the first."""
    fake_openai.script(Reply(status=429, headers={"Retry-After": "30"}))
    async with run_gateway(gateway_settings(tmp_path, demo="false")) as g:
        await g.add_provider("a", "openai", fake_openai.base_url, api_key="k")
        await g.add_provider("b", "openai", second_openai.base_url, api_key="k")
        await g.add_model("m-a", "a", weight=9)
        await g.add_model("m-b", "b", weight=3)
        raw = await client(g).chat.completions.with_raw_response.create(model="m-a", messages=MSG)
        assert raw.headers["x-tokenhub-model"] == "m-b"
        assert raw.headers["x-tokenhub-reason"] == "failover-rate-limited"
        # The next request does not touch provider a at all, even though it is hinted.
        raw = await client(g).chat.completions.with_raw_response.create(model="m-a", messages=MSG)
        assert raw.headers["x-tokenhub-model"] == "m-b"
        assert len(fake_openai.requests) == 1
        sim = (await g.admin.post("/admin/v1/routing/simulate", json={"model_hint": "m-a"})).json()
        assert "m-a" in sim["excluded"]


async def test_context_overflow_escalates_to_larger_context(
    tmp_path: Path, fake_openai: FakeOpenAI, second_openai: FakeOpenAI
) -> None:
    """A context-length error escalates to a model with a larger context."""
    fake_openai.script(
        Reply(
            status=400,
            body={
                "error": {
                    "message": "maximum context length exceeded",
                    "type": "x",
                    "code": "context_length_exceeded",
                }
            },
        )
    )
    async with run_gateway(gateway_settings(tmp_path, demo="false")) as g:
        await g.add_provider("a", "openai", fake_openai.base_url, api_key="k")
        await g.add_provider("b", "openai", second_openai.base_url, api_key="k")
        await g.add_model("small-ctx", "a", weight=9, max_context_tokens=8000)
        await g.add_model("big-ctx", "b", weight=2, max_context_tokens=128000)
        raw = await client(g).chat.completions.with_raw_response.create(
            model="small-ctx", messages=MSG
        )
        assert raw.headers["x-tokenhub-model"] == "big-ctx"
        assert raw.headers["x-tokenhub-reason"] == "escalated-context-overflow"


async def test_upstream_timeout_fails_over(
    tmp_path: Path, fake_openai: FakeOpenAI, second_openai: FakeOpenAI
) -> None:
    """An upstream slower than the timeout counts as transient and fails over."""
    fake_openai.script(*[Reply(delay_s=3) for _ in range(3)])
    settings = gateway_settings(tmp_path, demo="false", provider_timeout_secs="0.3")
    async with run_gateway(settings) as g:
        await g.add_provider("a", "openai", fake_openai.base_url, api_key="k")
        await g.add_provider("b", "openai", second_openai.base_url, api_key="k")
        await g.add_model("slow", "a", weight=9)
        await g.add_model("fast", "b", weight=1)
        raw = await client(g).chat.completions.with_raw_response.create(model="slow", messages=MSG)
        assert raw.headers["x-tokenhub-model"] == "fast"
        assert raw.headers["x-tokenhub-reason"] == "failover-transient"


async def test_provider_down_fails_over(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """A provider that refuses connections is skipped for a working one."""
    dead = f"http://127.0.0.1:{free_port()}"
    async with run_gateway(gateway_settings(tmp_path, demo="false")) as g:
        await g.add_provider("dead", "openai", dead, api_key="k")
        await g.add_provider("live", "openai", fake_openai.base_url, api_key="k")
        await g.add_model("m-dead", "dead", weight=10)
        await g.add_model("m-live", "live", weight=1)
        raw = await client(g).chat.completions.with_raw_response.create(
            model="m-dead", messages=MSG
        )
        assert raw.headers["x-tokenhub-model"] == "m-live"


async def test_all_fail_gives_502_with_attempts(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """When every model fails the client gets a 502 in its dialect, listing attempts."""
    fake_openai.script(*[Reply(status=401) for _ in range(5)])
    async with run_gateway(gateway_settings(tmp_path, demo="false")) as g:
        await g.add_provider("a", "openai", fake_openai.base_url, api_key="k")
        await g.add_model("m-a", "a")
        r = await g.client.post(
            "/v1/messages", json={"model": "m-a", "max_tokens": 5, "messages": MSG}
        )
        assert r.status_code == 502
        body = r.json()
        assert body["type"] == "error" and body["error"]["type"] == "api_error"
        with pytest.raises(openai.APIStatusError) as exc:
            await client(g).chat.completions.create(model="m-a", messages=MSG)
        assert exc.value.status_code == 502


async def test_stream_fails_over_before_first_byte(
    tmp_path: Path, fake_openai: FakeOpenAI, second_openai: FakeOpenAI
) -> None:
    """A stream whose first provider errs before any byte is served by the next one."""
    fake_openai.script(Reply(status=503), Reply(status=503), Reply(status=503))
    second_openai.script(Reply(text="streamed from b"))
    async with run_gateway(gateway_settings(tmp_path, demo="false")) as g:
        await g.add_provider("a", "openai", fake_openai.base_url, api_key="k")
        await g.add_provider("b", "openai", second_openai.base_url, api_key="k")
        await g.add_model("m-a", "a", weight=9)
        await g.add_model("m-b", "b", weight=1)
        raw = await client(g).chat.completions.with_raw_response.create(
            model="m-a", messages=MSG, stream=True
        )
        assert raw.headers["x-tokenhub-model"] == "m-b"
        text = ""
        async for chunk in raw.parse():
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
        assert text == "streamed from b"


@pytest.mark.parametrize("surface", ["openai", "anthropic"])
async def test_mid_stream_upstream_failure_ends_with_error_event(
    tmp_path: Path, fake_openai: FakeOpenAI, surface: str
) -> None:
    """An upstream that drops mid-stream ends the client's stream with an error event."""
    fake_openai.script(Reply(text="a b c d e f g h", break_after=2))
    async with run_gateway(gateway_settings(tmp_path, demo="false")) as g:
        await g.add_provider("a", "openai", fake_openai.base_url, api_key="k")
        await g.add_model("m-a", "a")
        if surface == "openai":
            body = {"model": "m-a", "messages": MSG, "stream": True}
            path = "/v1/chat/completions"
        else:
            body = {"model": "m-a", "messages": MSG, "stream": True, "max_tokens": 20}
            path = "/v1/messages"
        async with g.client.stream("POST", path, json=body) as r:
            assert r.status_code == 200
            text = (await r.aread()).decode()
        if surface == "openai":
            assert '"error"' in text and text.rstrip().endswith("data: [DONE]")
        else:
            assert "event: error" in text
            assert "message_stop" not in text


async def test_client_disconnect_cancels_upstream(tmp_path: Path) -> None:
    """Closing a stream early cancels the upstream request."""
    cancelled = asyncio.Event()

    from aiohttp import web

    async def slow_stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for i in range(200):
                chunk = {
                    "id": "x",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": "m",
                    "choices": [
                        {"index": 0, "delta": {"content": f"t{i} "}, "finish_reason": None}
                    ],
                }
                await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
                await asyncio.sleep(0.05)
        except (ConnectionResetError, asyncio.CancelledError):
            cancelled.set()
            raise
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", slow_stream)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with run_gateway(gateway_settings(tmp_path, demo="false")) as g:
            await g.add_provider("slow", "openai", f"http://127.0.0.1:{port}", api_key="k")
            await g.add_model("m-slow", "slow")
            async with (
                httpx.AsyncClient(
                    base_url=g.url, headers={"Authorization": f"Bearer {g.api_key}"}
                ) as c,
                c.stream(
                    "POST",
                    "/v1/chat/completions",
                    json={"model": "m-slow", "messages": MSG, "stream": True},
                ) as r,
            ):
                async for line in r.aiter_lines():
                    if "t2" in line:
                        break
            await asyncio.wait_for(cancelled.wait(), 5)
    finally:
        await runner.cleanup()


async def test_anthropic_rate_limit_to_openai(
    tmp_path: Path, fake_anthropic: FakeAnthropic, fake_openai: FakeOpenAI
) -> None:
    """An Anthropic client is served by OpenAI when Anthropic is rate limited."""
    fake_anthropic.script(
        Reply(
            status=429,
            headers={"retry-after": "10"},
            body={"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
        )
    )
    fake_openai.script(Reply(text="from openai"))
    async with run_gateway(gateway_settings(tmp_path, demo="false")) as g:
        await g.add_provider("an", "anthropic", fake_anthropic.base_url, api_key="k")
        await g.add_provider("oa", "openai", fake_openai.base_url, api_key="k")
        await g.add_model("claude", "an", weight=9)
        await g.add_model("gpt", "oa", weight=3)
        c = anthropic.AsyncAnthropic(base_url=g.url, api_key=g.api_key, max_retries=0)
        msg = await c.messages.create(model="claude", max_tokens=10, messages=MSG)
        assert msg.content[0].text == "from openai"
