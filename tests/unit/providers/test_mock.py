"""The in-process mock provider and the adapter registry."""

from __future__ import annotations

import time

import pytest

from tests.unit.providers.conftest import FakeClock, hello, make_adapter
from tokenhub.errors import ProviderError
from tokenhub.providers.anthropic import AnthropicAdapter
from tokenhub.providers.base import Adapter
from tokenhub.providers.mock import MockAdapter
from tokenhub.providers.openai import OpenAIAdapter
from tokenhub.providers.registry import ADAPTER_TYPES, create_adapter, needs_api_key
from tokenhub.providers.vllm import VLLMAdapter
from tokenhub.types import (
    ChatRequest,
    Dialect,
    ErrorClass,
    Message,
    ModelConfig,
    ProviderConfig,
    Target,
    ToolSpec,
    Usage,
)

TARGET = Target(model=ModelConfig(id="mock-small", provider_id="mock"), request_id="r", timeout_s=5)


def mock(**options: object) -> Adapter:
    return make_adapter("mock", [], FakeClock(), **options)


async def test_mock_echoes_last_user_message() -> None:
    """The answer is the model id in brackets and the last user message, with usage."""
    req = ChatRequest(messages=[Message("system", "sys"), Message("user", "hello there world")])
    resp = await mock().complete(req, TARGET)
    assert resp.content == "[mock-small] hello there world"
    assert resp.usage == Usage(prompt_tokens=4, completion_tokens=4)
    assert resp.finish_reason == "stop"
    assert resp.dialect == Dialect.NONE and resp.raw is None


async def test_mock_echo_truncated() -> None:
    """Long user messages are cut to 200 characters in the echo."""
    resp = await mock().complete(hello("x" * 1000), TARGET)
    assert resp.content == "[mock-small] " + "x" * 200


async def test_mock_stream_shape() -> None:
    """Role chunk first, several word chunks, then one finish chunk with usage."""
    chunks = [c async for c in mock().stream(hello("one two three"), TARGET)]
    assert chunks[0].role == "assistant"
    texts = [c.text for c in chunks if c.text]
    assert len(texts) == 4
    assert "".join(texts) == "[mock-small] one two three"
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage == Usage(3, 4)


async def test_mock_max_tokens_truncates() -> None:
    """max_tokens cuts the answer and reports finish_reason length."""
    req = ChatRequest(messages=[Message("user", "a b c d e f")], max_tokens=3)
    resp = await mock().complete(req, TARGET)
    assert resp.content == "[mock-small] a b"
    assert resp.finish_reason == "length"
    assert resp.usage.completion_tokens == 3
    chunks = [c async for c in mock().stream(req, TARGET)]
    assert "".join(c.text or "" for c in chunks) == "[mock-small] a b"
    assert chunks[-1].finish_reason == "length"


async def test_mock_tool_call_on_request() -> None:
    """'call <tool>' with that tool offered yields a call with arguments '{}'."""
    req = ChatRequest(
        messages=[Message("user", "please call get_time")], tools=[ToolSpec("get_time")]
    )
    resp = await mock().complete(req, TARGET)
    assert [(c.name, c.arguments) for c in resp.tool_calls] == [("get_time", "{}")]
    assert resp.finish_reason == "tool_calls" and resp.content is None
    chunks = [c async for c in mock().stream(req, TARGET)]
    deltas = [d for c in chunks for d in c.tool_calls or []]
    assert [(d.index, d.name, d.arguments) for d in deltas] == [(0, "get_time", "{}")]
    assert chunks[-1].finish_reason == "tool_calls"


async def test_mock_ignores_unoffered_tool() -> None:
    """Without the tool in the request, 'call x' is just echoed."""
    resp = await mock().complete(hello("call get_time"), TARGET)
    assert resp.tool_calls == [] and resp.content == "[mock-small] call get_time"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (500, ErrorClass.TRANSIENT),
        (429, ErrorClass.RATE_LIMITED),
        (413, ErrorClass.CONTEXT_OVERFLOW),
        (401, ErrorClass.FATAL),
    ],
)
async def test_mock_failure_classified_from_status(status: int, expected: ErrorClass) -> None:
    """failure_rate 1 always fails, classified from error_status like a real upstream."""
    adapter = mock(failure_rate=1.0, error_status=status)
    with pytest.raises(ProviderError) as info:
        await adapter.complete(hello(), TARGET)
    assert (info.value.error_class, info.value.status) == (expected, status)
    stream = adapter.stream(hello(), TARGET)
    with pytest.raises(ProviderError):
        await stream.__anext__()


async def test_mock_failure_rate_is_seeded() -> None:
    """The same seed gives the same failure pattern, at about the configured rate."""

    async def pattern(adapter: Adapter) -> list[bool]:
        out = []
        for _ in range(200):
            try:
                await adapter.complete(hello(), TARGET)
                out.append(True)
            except ProviderError:
                out.append(False)
        return out

    first = await pattern(mock(failure_rate=0.3, seed=42))
    second = await pattern(mock(failure_rate=0.3, seed=42))
    assert first == second
    assert 30 <= first.count(False) <= 90


async def test_mock_latency_before_first_chunk() -> None:
    """latency_ms is slept once before the answer / before the first chunk."""
    adapter = mock(latency_ms=60)
    started = time.perf_counter()
    await adapter.complete(hello(), TARGET)
    assert time.perf_counter() - started >= 0.055
    stream = adapter.stream(hello("a b c d"), TARGET)
    started = time.perf_counter()
    await stream.__anext__()
    first = time.perf_counter() - started
    rest = time.perf_counter()
    _ = [c async for c in stream]
    assert first >= 0.055
    assert time.perf_counter() - rest < 0.03


async def test_mock_list_models() -> None:
    """list_models returns options['models']."""
    assert await mock(models=["a", "b"]).list_models() == ["a", "b"]
    assert await mock().list_models() == []


def test_registry_builds_each_type() -> None:
    """Each registered type name builds its adapter class with the right dialect."""
    expected = {
        "openai": (OpenAIAdapter, Dialect.OPENAI),
        "anthropic": (AnthropicAdapter, Dialect.ANTHROPIC),
        "vllm": (VLLMAdapter, Dialect.OPENAI),
        "mock": (MockAdapter, Dialect.NONE),
    }
    assert set(ADAPTER_TYPES) == set(expected)
    for name, (cls, dialect) in expected.items():
        adapter = create_adapter(ProviderConfig(id=name, type=name), lambda _: None)
        assert type(adapter) is cls and adapter.dialect == dialect
        assert isinstance(adapter, Adapter)


def test_registry_rejects_unknown_type() -> None:
    """An unknown provider type is a ValueError naming it."""
    with pytest.raises(ValueError, match="bedrock"):
        create_adapter(ProviderConfig(id="x", type="bedrock"), lambda _: None)


def test_needs_api_key() -> None:
    """openai and anthropic need a key; vllm and mock do not."""
    assert [needs_api_key(t) for t in ("openai", "anthropic", "vllm", "mock")] == [
        True,
        True,
        False,
        False,
    ]


def test_registry_is_read_only() -> None:
    """The registry cannot be changed at run time (no module-level mutable state)."""
    with pytest.raises(TypeError):
        ADAPTER_TYPES["x"] = MockAdapter  # type: ignore[index]
