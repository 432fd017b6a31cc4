"""The conformance suite every network adapter passes against its fake upstream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.fakes.upstreams import Reply, sse
from tests.unit.providers.conftest import (
    API_KEY,
    NETWORK_KINDS,
    FakeClock,
    Harness,
    dead_url,
    hello,
    make_adapter,
)
from tokenhub.errors import ProviderError
from tokenhub.providers.base import Adapter
from tokenhub.types import (
    ChatRequest,
    Chunk,
    ErrorClass,
    Message,
    ModelConfig,
    Target,
    ToolSpec,
    Usage,
)

WEATHER = ToolSpec(name="get_weather", description="Weather by city")
WEATHER_CALL = ("get_weather", '{"city": "Paris"}')


async def collect(adapter: Adapter, req: ChatRequest, target: Target) -> list[Chunk]:
    """All chunks of one stream."""
    return [chunk async for chunk in adapter.stream(req, target)]


def text_of(chunks: list[Chunk]) -> str:
    return "".join(c.text or "" for c in chunks)


def tool_calls_of(chunks: list[Chunk]) -> dict[int, dict[str, Any]]:
    """Tool-call deltas reassembled by index."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for delta in chunk.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
            call["id"] = delta.id or call["id"]
            call["name"] = delta.name or call["name"]
            call["arguments"] += delta.arguments
    return calls


def error_body(kind: str, message: str) -> dict[str, Any]:
    """An upstream error body in the harness's dialect."""
    if kind == "anthropic":
        return {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    return {"error": {"message": message, "type": "invalid_request_error", "code": None}}


async def test_plain_answer(net: Harness) -> None:
    """complete() returns the text, usage, finish reason and the raw upstream body."""
    resp = await net.adapter.complete(hello(), net.target())
    assert resp.content == "Hello from fake"
    assert resp.usage == Usage(10, 5)
    assert resp.finish_reason == "stop"
    assert resp.model == "up-m1"
    assert resp.dialect == net.adapter.dialect
    assert resp.raw is not None and json.loads(resp.raw)["model"] == "up-m1"


async def test_streamed_answer(net: Harness) -> None:
    """stream() reassembles to the text, ends with usage, and every chunk carries raw bytes."""
    chunks = await collect(net.adapter, hello(), net.target())
    assert text_of(chunks) == "Hello from fake"
    assert chunks[0].role == "assistant"
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]
    assert [c.usage for c in chunks if c.usage][-1] == Usage(10, 5)
    assert all(
        c.raw and c.raw.endswith(b"\n\n") and c.dialect == net.adapter.dialect for c in chunks
    )
    assert b"".join(c.raw or b"" for c in chunks).count(b"data:") == len(chunks)


async def test_stream_request_starts_on_first_next(net: Harness) -> None:
    """No request leaves before the first __anext__; the first chunk follows the headers."""
    stream = net.adapter.stream(hello(), net.target())
    assert net.upstream.requests == []
    first = await stream.__anext__()
    assert len(net.upstream.requests) == 1
    assert first.role == "assistant"
    await stream.aclose()


async def test_stream_bad_status_raises_before_any_chunk(net: Harness) -> None:
    """An error status fails the first __anext__, so the router can still fail over."""
    net.upstream.script(Reply(status=503))
    stream = net.adapter.stream(hello(), net.target())
    with pytest.raises(ProviderError) as info:
        await stream.__anext__()
    assert info.value.error_class == ErrorClass.TRANSIENT
    assert info.value.status == 503


async def test_tool_call_answer(net: Harness) -> None:
    """A tool call comes back as ToolCall with JSON-text arguments and finish tool_calls."""
    net.upstream.script(Reply(text="", tool_call=WEATHER_CALL))
    req = ChatRequest(messages=[Message("user", "weather?")], tools=[WEATHER])
    resp = await net.adapter.complete(req, net.target())
    assert resp.finish_reason == "tool_calls"
    assert [(c.name, json.loads(c.arguments)) for c in resp.tool_calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert resp.tool_calls[0].id
    assert not resp.content


async def test_streamed_tool_call_indexed_by_ordinal(net: Harness) -> None:
    """Streamed tool-call deltas reassemble under index 0, even after a text block."""
    net.upstream.script(Reply(text="Let me look.", tool_call=WEATHER_CALL))
    req = ChatRequest(messages=[Message("user", "weather?")], tools=[WEATHER])
    chunks = await collect(net.adapter, req, net.target())
    calls = tool_calls_of(chunks)
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather" and calls[0]["id"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert text_of(chunks) == "Let me look."
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["tool_calls"]


async def test_usage_reported_as_sent(net: Harness) -> None:
    """Prompt and completion token counts are the upstream's, streamed or not."""
    net.upstream.script(Reply(usage=(123, 45)), Reply(usage=(7, 8)))
    resp = await net.adapter.complete(hello(), net.target())
    chunks = await collect(net.adapter, hello(), net.target())
    assert resp.usage == Usage(123, 45)
    assert [c.usage for c in chunks if c.usage][-1] == Usage(7, 8)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(status=500), ErrorClass.TRANSIENT),
        (Reply(status=502), ErrorClass.TRANSIENT),
        (Reply(status=408), ErrorClass.TRANSIENT),
        (Reply(status=413), ErrorClass.CONTEXT_OVERFLOW),
        (Reply(status=401), ErrorClass.FATAL),
        (Reply(status=400), ErrorClass.FATAL),
        (Reply(status=404), ErrorClass.FATAL),
    ],
)
async def test_error_status_classes(net: Harness, reply: Reply, expected: ErrorClass) -> None:
    """Each upstream status maps to its error class, with the status kept."""
    net.upstream.script(reply)
    with pytest.raises(ProviderError) as info:
        await net.adapter.complete(hello(), net.target())
    assert info.value.error_class == expected
    assert info.value.status == reply.status


async def test_rate_limited_with_retry_after(net: Harness) -> None:
    """429 with Retry-After is rate_limited and carries the wait in seconds."""
    net.upstream.script(Reply(status=429, headers={"Retry-After": "7"}))
    with pytest.raises(ProviderError) as info:
        await net.adapter.complete(hello(), net.target())
    assert info.value.error_class == ErrorClass.RATE_LIMITED
    assert info.value.retry_after == 7.0


async def test_context_length_body_is_overflow(net: Harness) -> None:
    """A 400 whose body says the context is too long is context_overflow."""
    message = "This model's maximum context length is 8192 tokens; you requested 9000"
    net.upstream.script(Reply(status=400, body=error_body(net.kind, message)))
    with pytest.raises(ProviderError) as info:
        await net.adapter.complete(hello(), net.target())
    assert info.value.error_class == ErrorClass.CONTEXT_OVERFLOW


async def test_error_message_never_repeats_the_key(net: Harness) -> None:
    """An upstream echoing the key does not get it into the exception message."""
    body = error_body(net.kind, f"Incorrect API key provided: {API_KEY}")
    net.upstream.script(Reply(status=401, body=body))
    with pytest.raises(ProviderError) as info:
        await net.adapter.complete(hello(), net.target())
    assert "SECRET" not in str(info.value)
    assert "Incorrect API key" in str(info.value)


@pytest.mark.parametrize("streamed", [False, True])
async def test_timeout_is_transient(net: Harness, streamed: bool) -> None:
    """An upstream slower than target.timeout_s is a transient failure."""
    net.upstream.script(Reply(delay_s=1.0))
    with pytest.raises(ProviderError) as info:
        if streamed:
            await collect(net.adapter, hello(), net.target(timeout_s=0.2))
        else:
            await net.adapter.complete(hello(), net.target(timeout_s=0.2))
    assert info.value.error_class == ErrorClass.TRANSIENT


@pytest.mark.parametrize("streamed", [False, True])
async def test_connection_refused_is_transient(net: Harness, streamed: bool) -> None:
    """Nothing listening at the base URL is a transient failure."""
    adapter = make_adapter(net.kind, [dead_url()], FakeClock())
    try:
        with pytest.raises(ProviderError) as info:
            if streamed:
                await collect(adapter, hello(), net.target())
            else:
                await adapter.complete(hello(), net.target())
        assert info.value.error_class == ErrorClass.TRANSIENT
    finally:
        await adapter.close()


async def test_mid_stream_drop_raises_from_iterator(net: Harness) -> None:
    """A connection cut mid-stream raises a transient ProviderError after the early chunks."""
    net.upstream.script(Reply(break_after=3))
    got: list[Chunk] = []
    with pytest.raises(ProviderError) as info:
        async for chunk in net.adapter.stream(hello(), net.target()):
            got.append(chunk)
    assert len(got) == 3
    assert info.value.error_class == ErrorClass.TRANSIENT


async def test_stream_ending_early_is_transient(net: Harness) -> None:
    """A body that ends cleanly before the stream's end marker is still a failure."""
    if net.kind == "anthropic":
        body = 'event: ping\ndata: {"type": "ping"}\n\n'
    else:
        body = 'data: {"choices": [{"index": 0, "delta": {"content": "Hel"}}]}\n\n'
    net.upstream.script(Reply(body=body))
    with pytest.raises(ProviderError) as info:
        await collect(net.adapter, hello(), net.target())
    assert info.value.error_class == ErrorClass.TRANSIENT


async def test_closing_stream_early_leaves_adapter_usable(net: Harness) -> None:
    """aclose() after one chunk drops that upstream response; the next call is clean."""
    net.upstream.script(Reply(text="one two three four five six"))
    stream = net.adapter.stream(hello(), net.target())
    assert (await stream.__anext__()).role == "assistant"
    await stream.aclose()
    resp = await net.adapter.complete(hello(), net.target())
    assert resp.content == "Hello from fake"


async def test_request_id_and_auth_headers_sent(net: Harness) -> None:
    """X-Request-ID and the provider's auth header reach the upstream; vLLM sends no key."""
    await net.adapter.complete(hello(), net.target(request_id="abc-42"))
    headers = net.upstream.requests[0].headers
    assert headers["x-request-id"] == "abc-42"
    if net.kind == "anthropic":
        assert headers["x-api-key"] == API_KEY
        assert headers["anthropic-version"] == "2023-06-01"
    elif net.kind == "openai":
        assert headers["authorization"] == f"Bearer {API_KEY}"
    else:
        assert "authorization" not in headers


async def test_target_headers_forwarded(net: Harness) -> None:
    """Extra target headers (traceparent) are sent upstream."""
    target = net.target()
    target.headers["traceparent"] = "00-abc-def-01"
    await net.adapter.complete(hello(), target)
    assert net.upstream.requests[0].headers["traceparent"] == "00-abc-def-01"


async def test_list_models(net: Harness) -> None:
    """list_models() returns the ids of GET /v1/models."""
    net.upstream.models = ["alpha", "beta/gamma"]
    assert await net.adapter.list_models() == ["alpha", "beta/gamma"]


async def test_model_wire_name_sent(net: Harness) -> None:
    """The upstream gets the model's wire name, not the gateway's id."""
    model = ModelConfig(id="gw-name", provider_id=net.kind, upstream_id="wire-name")
    await net.adapter.complete(hello(), Target(model=model, request_id="r", timeout_s=5))
    assert net.upstream.requests[0].json["model"] == "wire-name"


async def test_stream_agrees_with_complete(any_adapter: Harness) -> None:
    """Streamed text, finish reason and usage equal the non-streamed answer's."""
    req = hello("tell me something")
    resp = await any_adapter.adapter.complete(req, any_adapter.target())
    chunks = await collect(any_adapter.adapter, req, any_adapter.target())
    assert resp.content and text_of(chunks) == resp.content
    assert [c.finish_reason for c in chunks if c.finish_reason] == [resp.finish_reason]
    assert [c.usage for c in chunks if c.usage][-1] == resp.usage
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0


async def test_tool_call_both_ways(any_adapter: Harness) -> None:
    """A requested tool call comes back whole from complete() and in pieces from stream()."""
    any_adapter.upstream.script(*[Reply(text="", tool_call=("get_weather", "{}"))] * 2)
    req = ChatRequest(messages=[Message("user", "call get_weather")], tools=[WEATHER])
    resp = await any_adapter.adapter.complete(req, any_adapter.target())
    chunks = await collect(any_adapter.adapter, req, any_adapter.target())
    assert [(c.name, json.loads(c.arguments)) for c in resp.tool_calls] == [("get_weather", {})]
    streamed = tool_calls_of(chunks)
    assert [(c["name"], json.loads(c["arguments"])) for c in streamed.values()] == [
        ("get_weather", {})
    ]
    assert resp.finish_reason == "tool_calls"


def test_implements_adapter_protocol(any_adapter: Harness) -> None:
    """Every adapter satisfies the Adapter protocol and names its wire dialect."""
    assert isinstance(any_adapter.adapter, Adapter)
    assert any_adapter.adapter.config.type == any_adapter.kind


@pytest.mark.parametrize("body", ["[1, 2]", '{"choices": "nope", "content": 3}', "not json"])
async def test_malformed_success_body_is_transient(net: Harness, body: str) -> None:
    """A 200 whose body is not the expected shape is a transient failure, not a crash."""
    net.upstream.script(Reply(body=body))
    with pytest.raises(ProviderError) as info:
        await net.adapter.complete(hello(), net.target())
    assert info.value.error_class == ErrorClass.TRANSIENT


@pytest.fixture
async def endless() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """An upstream that streams one event, then pings forever; sets the event on hang-up."""
    hung_up = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        start = {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}
        message = {"type": "message_start", "message": {"role": "assistant", "usage": {}}}
        await resp.write(
            sse(message, "message_start") if "messages" in request.path else sse(start)
        )
        try:
            while True:
                await asyncio.sleep(0.01)
                await resp.write(b": ping\n\n")
        except (ConnectionError, asyncio.CancelledError):
            hung_up.set()
            raise

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    app.router.add_post("/v1/messages", handler)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", hung_up
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("kind", NETWORK_KINDS)
async def test_aclose_hangs_up_upstream(kind: str, endless: tuple[str, asyncio.Event]) -> None:
    """Closing the stream early closes the upstream connection promptly."""
    url, hung_up = endless
    adapter = make_adapter(kind, [url], FakeClock())
    target = Target(model=ModelConfig(id="m", provider_id=kind), request_id="r", timeout_s=5)
    try:
        stream = adapter.stream(hello(), target)
        assert (await stream.__anext__()).role == "assistant"
        await stream.aclose()
        await asyncio.wait_for(hung_up.wait(), timeout=2)
    finally:
        await adapter.close()
    assert hung_up.is_set()
