"""The official OpenAI and Anthropic SDKs, unchanged but for the base URL, talking to
a real TokenHub in front of fake upstreams on loopback sockets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import anthropic
import openai
import pytest

from tests.fakes.upstreams import FakeAnthropic, FakeOpenAI, Reply
from tests.integration.harness import Gateway, gateway_settings, run_gateway

TOOLS_OPENAI = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
TOOLS_ANTHROPIC = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


@pytest.fixture
async def gw(
    tmp_path: Path, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> AsyncIterator[Gateway]:
    async with run_gateway(gateway_settings(tmp_path, demo="false")) as g:
        await g.add_provider("oa", "openai", fake_openai.base_url, api_key="sk-test-openai")
        await g.add_provider("an", "anthropic", fake_anthropic.base_url, api_key="sk-ant-test")
        await g.add_model("gpt-fake", "oa", weight=6, max_context_tokens=32000)
        await g.add_model("claude-fake", "an", weight=6, max_context_tokens=32000)
        yield g


def oai(g: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=g.v1, api_key=g.api_key, max_retries=0)


def ant(g: Gateway) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=g.url, api_key=g.api_key, max_retries=0)


async def test_openai_sdk_to_openai_upstream(gw: Gateway, fake_openai: FakeOpenAI) -> None:
    """An OpenAI client reaches an OpenAI provider; routing headers name the choice."""
    fake_openai.script(Reply(text="pass-through works", usage=(12, 3)))
    raw = await oai(gw).chat.completions.with_raw_response.create(
        model="gpt-fake", messages=[{"role": "user", "content": "hi"}], temperature=0.2
    )
    reply = raw.parse()
    assert reply.choices[0].message.content == "pass-through works"
    assert reply.usage is not None and reply.usage.prompt_tokens == 12
    assert raw.headers["x-tokenhub-model"] == "gpt-fake"
    assert raw.headers["x-tokenhub-provider"] == "oa"
    assert raw.headers["x-tokenhub-reason"] == "model-hint"
    sent = fake_openai.requests[-1]
    assert sent.headers["Authorization"] == "Bearer sk-test-openai"
    assert sent.headers["X-Request-ID"] == raw.headers["x-request-id"]
    assert sent.json["temperature"] == 0.2 and sent.json["model"] == "gpt-fake"


async def test_anthropic_sdk_to_anthropic_upstream(
    gw: Gateway, fake_anthropic: FakeAnthropic
) -> None:
    """An Anthropic client reaches an Anthropic provider with its key and version."""
    fake_anthropic.script(Reply(text="bonjour", usage=(7, 2)))
    msg = await ant(gw).messages.create(
        model="claude-fake",
        max_tokens=100,
        system="be brief",
        messages=[{"role": "user", "content": "hi"}],
    )
    assert msg.content[0].type == "text" and msg.content[0].text == "bonjour"
    assert msg.usage.input_tokens == 7 and msg.usage.output_tokens == 2
    sent = fake_anthropic.requests[-1]
    assert sent.headers["x-api-key"] == "sk-ant-test"
    assert sent.json["system"] == "be brief" and sent.json["max_tokens"] == 100


async def test_openai_sdk_served_by_anthropic_with_tools(
    gw: Gateway, fake_anthropic: FakeAnthropic
) -> None:
    """An Anthropic tool_use answer comes back as an OpenAI tool call."""
    fake_anthropic.script(Reply(tool_call=("get_weather", '{"city": "Paris"}')))
    reply = await oai(gw).chat.completions.create(
        model="claude-fake",
        messages=[
            {"role": "system", "content": "use tools"},
            {"role": "user", "content": "weather in Paris?"},
        ],
        tools=TOOLS_OPENAI,
        tool_choice="auto",
        stop=["END"],
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    sent = fake_anthropic.requests[-1].json
    assert sent["system"] == "use tools"
    assert sent["stop_sequences"] == ["END"]
    assert sent["tools"][0]["input_schema"]["properties"]["city"]["type"] == "string"
    assert "max_tokens" in sent


async def test_anthropic_sdk_served_by_openai_with_tools(
    gw: Gateway, fake_openai: FakeOpenAI
) -> None:
    """An OpenAI tool call comes back as an Anthropic tool_use block."""
    fake_openai.script(Reply(tool_call=("get_weather", '{"city": "Oslo"}')))
    msg = await ant(gw).messages.create(
        model="gpt-fake",
        max_tokens=50,
        tools=TOOLS_ANTHROPIC,
        messages=[{"role": "user", "content": "weather in Oslo?"}],
    )
    assert msg.stop_reason == "tool_use"
    block = next(b for b in msg.content if b.type == "tool_use")
    assert block.name == "get_weather" and block.input == {"city": "Oslo"}
    sent = fake_openai.requests[-1].json
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["max_tokens"] == 50


@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake"])
async def test_openai_sdk_streaming(
    gw: Gateway, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, model: str
) -> None:
    """OpenAI streaming works from either provider, usage included at the end."""
    for fake in (fake_openai, fake_anthropic):
        fake.script(Reply(text="one two three four", usage=(9, 4)))
    stream = await oai(gw).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, finish = "", None, None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert text == "one two three four"
    assert finish == "stop"
    assert usage is not None and usage.prompt_tokens == 9 and usage.completion_tokens == 4


@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake"])
async def test_anthropic_sdk_streaming(
    gw: Gateway, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, model: str
) -> None:
    """Anthropic streaming works from either provider, with a final usage."""
    for fake in (fake_openai, fake_anthropic):
        fake.script(Reply(text="alpha beta gamma", usage=(5, 3)))
    async with ant(gw).messages.stream(
        model=model, max_tokens=64, messages=[{"role": "user", "content": "go"}]
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "alpha beta gamma"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3


async def test_streamed_tool_call_translated(gw: Gateway, fake_anthropic: FakeAnthropic) -> None:
    """A streamed Anthropic tool_use arrives as OpenAI tool call deltas."""
    fake_anthropic.script(Reply(tool_call=("get_weather", '{"city": "Rome"}')))
    stream = await oai(gw).chat.completions.create(
        model="claude-fake",
        messages=[{"role": "user", "content": "weather?"}],
        tools=TOOLS_OPENAI,
        stream=True,
    )
    name, args, finish = "", "", None
    async for chunk in stream:
        if not chunk.choices:
            continue
        for tc in chunk.choices[0].delta.tool_calls or []:
            name += tc.function.name or "" if tc.function else ""
            args += tc.function.arguments or "" if tc.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather"
    assert json.loads(args) == {"city": "Rome"}
    assert finish == "tool_calls"


async def test_native_envelope(gw: Gateway, fake_openai: FakeOpenAI) -> None:
    """/v1/chat answers with the negotiated model, cost estimate and reason."""
    fake_openai.script(Reply(text="native ok", usage=(1000, 500)))
    r = await gw.client.post(
        "/v1/chat",
        json={
            "request": {
                "messages": [{"role": "user", "content": "hello"}],
                "model_hint": "gpt-fake",
                "parameters": {"max_tokens": 100},
            },
            "policy": {"mode": "cheap", "max_budget_usd": 1.0},
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["negotiated_model"] == "gpt-fake"
    assert body["routing_reason"] == "model-hint"
    assert body["response"]["content"] == "native ok"
    assert body["estimated_cost_usd"] >= 0
    assert r.headers["x-tokenhub-provider"] == "oa"


async def test_models_list_and_healthz(gw: Gateway) -> None:
    """/v1/models lists the registered models in OpenAI format; /healthz counts them."""
    page = await oai(gw).models.list()
    assert {m.id for m in page.data} == {"gpt-fake", "claude-fake"}
    r = await gw.admin.get("/healthz")
    assert r.status_code == 200
    assert r.json()["models"] == 2 and r.json()["adapters"] == 2


async def test_demo_models_serve_first_request(tmp_path: Path) -> None:
    """With no provider configured, the demo mock models answer at once."""
    async with run_gateway(gateway_settings(tmp_path)) as g:
        raw = await oai(g).chat.completions.with_raw_response.create(
            model="anything", messages=[{"role": "user", "content": "hello there"}]
        )
        reply = raw.parse()
        assert raw.headers["x-tokenhub-model"].startswith("demo/")
        assert raw.headers["x-tokenhub-reason"].startswith("routed-weight-")
        assert "hello there" in (reply.choices[0].message.content or "")
        models = {m.id for m in (await oai(g).models.list()).data}
        assert models == {"demo/tiny", "demo/small", "demo/medium", "demo/large"}


async def test_no_models_healthz_503(tmp_path: Path) -> None:
    """With the demo off and nothing configured, /healthz is 503 and chat is 502."""
    async with run_gateway(gateway_settings(tmp_path, demo="false")) as g:
        assert (await g.admin.get("/healthz")).status_code == 503
        with pytest.raises(openai.APIStatusError) as exc:
            await oai(g).chat.completions.create(
                model="x", messages=[{"role": "user", "content": "hi"}]
            )
        assert exc.value.status_code == 502
