"""What each adapter puts on the wire, and how it reads what comes back."""

from __future__ import annotations

import json

import pytest

from tests.fakes.upstreams import FakeAnthropic, FakeOpenAI, Reply, sse
from tests.unit.providers.conftest import FakeClock, Harness, make_adapter
from tokenhub.errors import ProviderError
from tokenhub.providers.anthropic_wire import StreamState
from tokenhub.providers.anthropic_wire import build_body as build_anthropic_body
from tokenhub.providers.http import api_url
from tokenhub.types import (
    ChatRequest,
    Dialect,
    ErrorClass,
    Message,
    ToolCall,
    ToolSpec,
)

WEATHER = ToolSpec(name="get_weather", description="Weather by city", parameters={"type": "object"})


def full_request() -> ChatRequest:
    """A request using every neutral feature: system, images, tool round trip, options."""
    return ChatRequest(
        messages=[
            Message("system", "Be brief."),
            Message(
                "user",
                [
                    {"type": "text", "text": "What is here?"},
                    {"type": "image", "url": "https://x.test/cat.png"},
                    {"type": "image", "media_type": "image/png", "data": "iVBORw0KGgo="},
                ],
            ),
            Message("assistant", None, tool_calls=[ToolCall("call_1", "get_weather", '{"c":"P"}')]),
            Message("tool", "sunny", tool_call_id="call_1"),
            Message("tool", "warm", tool_call_id="call_2"),
            Message("user", "thanks"),
        ],
        max_tokens=100,
        temperature=0.5,
        top_p=0.9,
        stop=["END"],
        tools=[WEATHER],
        tool_choice={"name": "get_weather"},
        response_format={"type": "json_object"},
        seed=7,
        user="user-9",
    )


async def anthropic_body(req: ChatRequest, stream: bool = False) -> dict:
    """The JSON body the Anthropic adapter sends for ``req``."""
    async with FakeAnthropic() as up:
        adapter = make_adapter("anthropic", [up.base_url], FakeClock())
        harness = Harness("anthropic", adapter, up)
        try:
            if stream:
                _ = [c async for c in adapter.stream(req, harness.target())]
            else:
                await adapter.complete(req, harness.target())
        finally:
            await adapter.close()
        return up.requests[0].json


async def openai_body(req: ChatRequest, stream: bool = False) -> dict:
    """The JSON body the OpenAI adapter sends for ``req``."""
    async with FakeOpenAI() as up:
        adapter = make_adapter("openai", [up.base_url + "/v1/"], FakeClock())
        harness = Harness("openai", adapter, up)
        try:
            if stream:
                _ = [c async for c in adapter.stream(req, harness.target())]
            else:
                await adapter.complete(req, harness.target())
        finally:
            await adapter.close()
        assert up.requests[0].path == "/v1/chat/completions"
        return up.requests[0].json


async def test_anthropic_lifts_system_and_defaults_max_tokens() -> None:
    """System messages become top-level system; max_tokens defaults to 4096."""
    req = ChatRequest(
        messages=[Message("system", "A"), Message("system", "B"), Message("user", "hi")]
    )
    body = await anthropic_body(req)
    assert body["system"] == "A\n\nB"
    assert body["max_tokens"] == 4096
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["model"] == "up-m1"


async def test_anthropic_full_translation() -> None:
    """Options, tools, tool_choice, images and tool round trips map to Anthropic shapes."""
    body = await anthropic_body(full_request())
    assert body["max_tokens"] == 100
    assert body["stop_sequences"] == ["END"]
    assert (body["temperature"], body["top_p"]) == (0.5, 0.9)
    assert body["metadata"] == {"user_id": "user-9"}
    assert "seed" not in body and "response_format" not in body
    assert body["system"].startswith("Be brief.") and "JSON" in body["system"]
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather by city",
            "input_schema": {"type": "object"},
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}
    user, assistant, results = body["messages"]
    assert user["content"][1] == {
        "type": "image",
        "source": {"type": "url", "url": "https://x.test/cat.png"},
    }
    assert user["content"][2]["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": "iVBORw0KGgo=",
    }
    assert assistant["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"c": "P"}}
    ]
    # both tool results and the following user turn merge into one user message
    assert results["role"] == "user"
    assert results["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": "warm"},
        {"type": "text", "text": "thanks"},
    ]


@pytest.mark.parametrize(
    ("choice", "wire"),
    [("auto", {"type": "auto"}), ("required", {"type": "any"}), ("none", {"type": "none"})],
)
async def test_anthropic_tool_choice_strings(choice: str, wire: dict) -> None:
    """auto / required / none map to Anthropic's auto / any / none."""
    req = ChatRequest(messages=[Message("user", "x")], tools=[WEATHER], tool_choice=choice)
    assert (await anthropic_body(req))["tool_choice"] == wire


async def test_openai_full_translation() -> None:
    """Neutral fields map to chat-completions shapes; a base ending in /v1 is not doubled."""
    body = await openai_body(full_request())
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    parts = body["messages"][1]["content"]
    assert parts[1] == {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}}
    assert parts[2]["image_url"]["url"] == "data:image/png;base64,iVBORw0KGgo="
    assert body["messages"][2]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"c":"P"}'},
        }
    ]
    assert body["messages"][3] == {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert (body["max_tokens"], body["seed"], body["user"], body["stop"]) == (
        100,
        7,
        "user-9",
        ["END"],
    )
    assert body["response_format"] == {"type": "json_object"}
    assert "stream" not in body


async def test_openai_stream_asks_for_usage() -> None:
    """Streams always set stream=true and stream_options.include_usage."""
    body = await openai_body(ChatRequest(messages=[Message("user", "x")]), stream=True)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_openai_fast_path_forwards_raw_with_model_swapped() -> None:
    """An OpenAI-dialect request is forwarded as sent, only the model changed."""
    raw = {
        "model": "client-alias",
        "messages": [{"role": "user", "content": "x"}],
        "logit_bias": {"1": 2},
    }
    req = ChatRequest(
        messages=[Message("user", "ignored")], dialect=Dialect.OPENAI, raw=raw, stream=True
    )
    body = await openai_body(req, stream=True)
    assert body["model"] == "up-m1"
    assert body["logit_bias"] == {"1": 2}
    assert body["messages"] == raw["messages"]
    assert body["stream_options"] == {"include_usage": True}
    assert raw["model"] == "client-alias" and "stream" not in raw  # the client's dict untouched


async def test_anthropic_fast_path_forwards_raw_with_model_swapped() -> None:
    """An Anthropic-dialect request is forwarded as sent, only the model changed."""
    raw = {
        "model": "claude-x",
        "max_tokens": 9,
        "messages": [{"role": "user", "content": "x"}],
        "top_k": 3,
    }
    req = ChatRequest(messages=[Message("user", "ignored")], dialect=Dialect.ANTHROPIC, raw=raw)
    body = await anthropic_body(req)
    assert body == {**raw, "model": "up-m1"}


async def test_other_dialect_raw_is_translated() -> None:
    """An Anthropic-dialect raw body is not forwarded to an OpenAI upstream."""
    raw = {"model": "claude-x", "max_tokens": 9, "messages": [{"role": "user", "content": "x"}]}
    req = ChatRequest(messages=[Message("user", "neutral")], dialect=Dialect.ANTHROPIC, raw=raw)
    body = await openai_body(req)
    assert body["messages"] == [{"role": "user", "content": "neutral"}]


async def test_anthropic_response_parsing(fake_anthropic: FakeAnthropic) -> None:
    """max_tokens stop reason maps to length; text blocks are joined."""
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        "stop_reason": "max_tokens",
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }
    fake_anthropic.script(Reply(body=body))
    adapter = make_adapter("anthropic", [fake_anthropic.base_url], FakeClock())
    try:
        resp = await adapter.complete(
            ChatRequest(messages=[Message("user", "x")]),
            Harness("anthropic", adapter, fake_anthropic).target(),
        )
    finally:
        await adapter.close()
    assert (resp.content, resp.finish_reason, resp.id) == ("ab", "length", "msg_1")
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (3, 4)


@pytest.mark.parametrize(
    ("error_type", "expected"),
    [
        ("overloaded_error", ErrorClass.TRANSIENT),
        ("rate_limit_error", ErrorClass.RATE_LIMITED),
        ("invalid_request_error", ErrorClass.FATAL),
    ],
)
async def test_anthropic_stream_error_event(
    fake_anthropic: FakeAnthropic, error_type: str, expected: ErrorClass
) -> None:
    """An error event inside a 200 stream raises ProviderError of the matching class."""
    start = {
        "type": "message_start",
        "message": {"role": "assistant", "usage": {"input_tokens": 1}},
    }
    error = {"type": "error", "error": {"type": error_type, "message": "Overloaded"}}
    body = (sse(start, "message_start") + sse(error, "error")).decode()
    fake_anthropic.script(Reply(body=body))
    adapter = make_adapter("anthropic", [fake_anthropic.base_url], FakeClock())
    harness = Harness("anthropic", adapter, fake_anthropic)
    got = []
    try:
        with pytest.raises(ProviderError) as info:
            async for chunk in adapter.stream(
                ChatRequest(messages=[Message("user", "x")]), harness.target()
            ):
                got.append(chunk)
    finally:
        await adapter.close()
    assert info.value.error_class == expected
    assert [c.role for c in got] == ["assistant"]


async def test_openai_stream_error_payload(fake_openai: FakeOpenAI) -> None:
    """An error object inside an OpenAI stream is raised, classified by its message."""
    chunk = {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}
    error = {"error": {"message": "maximum context length exceeded", "type": "BadRequestError"}}
    fake_openai.script(Reply(body=(sse(chunk) + sse(error)).decode()))
    adapter = make_adapter("openai", [fake_openai.base_url], FakeClock())
    harness = Harness("openai", adapter, fake_openai)
    try:
        with pytest.raises(ProviderError) as info:
            _ = [
                c
                async for c in adapter.stream(
                    ChatRequest(messages=[Message("user", "x")]), harness.target()
                )
            ]
    finally:
        await adapter.close()
    assert info.value.error_class == ErrorClass.CONTEXT_OVERFLOW


async def test_openai_done_event_is_raw_only(fake_openai: FakeOpenAI) -> None:
    """The [DONE] event is yielded last, with raw bytes and no neutral field."""
    adapter = make_adapter("openai", [fake_openai.base_url], FakeClock())
    harness = Harness("openai", adapter, fake_openai)
    try:
        chunks = [
            c
            async for c in adapter.stream(
                ChatRequest(messages=[Message("user", "x")]), harness.target()
            )
        ]
    finally:
        await adapter.close()
    last = chunks[-1]
    assert last.raw == b"data: [DONE]\n\n"
    assert (last.text, last.role, last.usage, last.finish_reason, last.tool_calls) == (None,) * 5


def test_anthropic_stream_state_usage_combines_start_and_delta() -> None:
    """message_delta usage reports message_start's input tokens with the output count."""
    state = StreamState()
    state.chunk(
        {"type": "message_start", "message": {"role": "assistant", "usage": {"input_tokens": 21}}},
        b"",
    )
    chunk = state.chunk(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 9},
        },
        b"",
    )
    assert chunk.finish_reason == "stop"
    assert chunk.usage is not None
    assert (chunk.usage.prompt_tokens, chunk.usage.completion_tokens) == (21, 9)


def test_anthropic_two_tool_calls_get_ordinals() -> None:
    """Tool-use blocks at block indexes 1 and 2 become tool-call indexes 0 and 1."""
    state = StreamState()
    indexes = []
    for block in (1, 2):
        start = {"type": "tool_use", "id": f"t{block}", "name": "f", "input": {}}
        state.chunk({"type": "content_block_start", "index": block, "content_block": start}, b"")
        delta = {"type": "input_json_delta", "partial_json": "{}"}
        chunk = state.chunk({"type": "content_block_delta", "index": block, "delta": delta}, b"")
        assert chunk.tool_calls is not None
        indexes.append(chunk.tool_calls[0].index)
    assert indexes == [0, 1]


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("http://h:1", "http://h:1/v1/models"),
        ("http://h:1/", "http://h:1/v1/models"),
        ("http://h:1/v1", "http://h:1/v1/models"),
        ("http://h:1/proxy/v1/", "http://h:1/proxy/v1/models"),
    ],
)
def test_api_url_never_doubles_v1(base: str, url: str) -> None:
    """/v1 is appended unless the base already ends with it."""
    assert api_url(base, "/models") == url


def test_anthropic_response_json_mentions_schema() -> None:
    """A json_schema response_format puts the schema in the system instruction."""
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    req = ChatRequest(messages=[Message("user", "x")], response_format=fmt)
    body = build_anthropic_body(req, "m", stream=False)
    assert json.dumps({"type": "object"}).replace(" ", "") in body["system"]
