"""The native /v1/chat envelope: parsing policy and request, encoding the answer."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tokenhub.api import native_codec, openai_codec
from tokenhub.api.native_codec import encode_native_response, parse_native_request
from tokenhub.config import MODES
from tokenhub.errors import BadRequest
from tokenhub.types import ChatResponse, Decision, Dialect, ModelConfig, ToolCall, Usage

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


def envelope(request: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """A valid native body, with request fields and top-level sections overridden."""
    return {"request": {"messages": MESSAGES, **(request or {})}, **top}


def test_full_envelope_parses_request_policy_and_capabilities() -> None:
    """Every section of the envelope lands in NativeRequest and its ChatRequest."""
    body = envelope(
        {
            "model_hint": "gpt-4o",
            "estimated_input_tokens": 42,
            "parameters": {
                "temperature": 0.2,
                "top_p": 0.8,
                "max_tokens": 64,
                "stop": ["END"],
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": "required",
                "response_format": {"type": "json_object"},
                "seed": 3,
                "user": "u",
            },
            "stream": True,
            "meta": {"trace": "t-1"},
        },
        policy={"mode": "cheap", "max_budget_usd": 0.5, "max_latency_ms": 900, "min_weight": 4},
        capabilities={"planning": False, "vision": True},
    )
    native = parse_native_request(body, "rid", MODES)
    chat = native.chat
    assert [m.role for m in chat.messages] == ["system", "user"]
    assert (chat.model, chat.estimated_input_tokens, chat.request_id) == ("gpt-4o", 42, "rid")
    assert (chat.temperature, chat.top_p, chat.max_tokens, chat.stop) == (0.2, 0.8, 64, ["END"])
    assert chat.tools is not None and chat.tools[0].name == "f"
    assert (chat.tool_choice, chat.seed, chat.user) == ("required", 3, "u")
    assert chat.response_format == {"type": "json_object"}
    assert chat.stream and chat.stream_usage
    assert chat.dialect is Dialect.NONE and chat.raw is None
    assert (native.mode, native.max_budget_usd, native.max_latency_ms, native.min_weight) == (
        "cheap",
        0.5,
        900,
        4,
    )
    assert native.capabilities == {"planning": False, "vision": True}
    assert native.meta == {"trace": "t-1"}


def test_minimal_envelope_leaves_policy_unset() -> None:
    """Only messages are required; absent policy fields stay None for the defaults."""
    native = parse_native_request(envelope(), "r", MODES)
    assert (native.mode, native.max_budget_usd, native.max_latency_ms, native.min_weight) == (
        None,
        None,
        None,
        None,
    )
    assert native.capabilities == {} and native.meta == {}
    assert native.chat.stream is False and native.chat.model is None


def test_planning_capability_selects_planning_mode() -> None:
    """capabilities.planning without a mode means mode "planning"."""
    native = parse_native_request(envelope(capabilities={"planning": True}), "r", MODES)
    assert native.mode == "planning"


def test_explicit_mode_wins_over_planning_capability() -> None:
    """An explicit policy.mode is kept even when planning is asked for."""
    body = envelope(policy={"mode": "cheap"}, capabilities={"planning": True})
    assert parse_native_request(body, "r", MODES).mode == "cheap"


def test_unknown_mode_names_the_allowed_modes() -> None:
    """An unknown mode is refused with the list of modes."""
    with pytest.raises(BadRequest) as info:
        parse_native_request(envelope(policy={"mode": "turbo"}), "r", ("cheap", "normal"))
    assert info.value.message == "policy.mode: unknown mode 'turbo' (one of cheap, normal)"


BAD: list[tuple[object, str]] = [
    (None, "body: must be a JSON object"),
    ({}, "request: must be an object"),
    ({"request": []}, "request: must be an object"),
    ({"request": {}}, "request.messages: must be a non-empty list"),
    (
        envelope({"messages": [{"role": "robot", "content": "x"}]}),
        "request.messages[0].role: must be one of",
    ),
    (envelope({"model_hint": 4}), "request.model_hint: must be a string"),
    (
        envelope({"estimated_input_tokens": -1}),
        "request.estimated_input_tokens: must be a whole number >= 0",
    ),
    (envelope({"parameters": "hot"}), "request.parameters: must be an object"),
    (
        envelope({"parameters": {"temperature": 5}}),
        "request.parameters.temperature: must be a number between 0 and 2",
    ),
    (
        envelope({"parameters": {"tools": [{"type": "x"}]}}),
        "request.parameters.tools[0].type: must be one of function",
    ),
    (
        envelope({"parameters": {"tool_choice": "all"}}),
        "request.parameters.tool_choice: must be auto, none, required",
    ),
    (envelope({"stream": "no"}), "request.stream: must be a boolean"),
    (envelope({"meta": []}), "request.meta: must be an object"),
    (envelope(policy=3), "policy: must be an object"),
    (envelope(policy={"mode": 3}), "policy.mode: must be a string"),
    (
        envelope(policy={"max_budget_usd": 101}),
        "policy.max_budget_usd: must be a number between 0 and 100",
    ),
    (
        envelope(policy={"max_budget_usd": -0.01}),
        "policy.max_budget_usd: must be a number between 0 and 100",
    ),
    (
        envelope(policy={"max_latency_ms": 300001}),
        "policy.max_latency_ms: must be a whole number between 0 and 300000",
    ),
    (
        envelope(policy={"max_latency_ms": 1.5}),
        "policy.max_latency_ms: must be a whole number between 0 and 300000",
    ),
    (
        envelope(policy={"min_weight": 11}),
        "policy.min_weight: must be a whole number between 0 and 10",
    ),
    (envelope(capabilities=[]), "capabilities: must be an object"),
    (envelope(capabilities={"planning": "yes"}), "capabilities.planning: must be a boolean"),
]


@pytest.mark.parametrize(("bad", "message"), BAD)
def test_invalid_input_is_a_bad_request_naming_the_field(bad: object, message: str) -> None:
    """Each invalid envelope raises BadRequest whose message starts with the field's path."""
    with pytest.raises(BadRequest) as info:
        parse_native_request(bad, "r", MODES)
    assert info.value.message.startswith(message), info.value.message


def test_native_response_carries_routing_and_cost() -> None:
    """The answer names the negotiated model, reason, estimate, usage and cost."""
    resp = ChatResponse(
        id="chatcmpl-9",
        model="upstream-name",
        content=None,
        tool_calls=[ToolCall("call_1", "f", '{"a":1}')],
        finish_reason="tool_calls",
        usage=Usage(10, 5),
    )
    decision = Decision(
        model=ModelConfig(id="gpt-4o", provider_id="openai"),
        reason="cheapest eligible",
        estimated_cost_usd=0.0012,
    )
    out = orjson.loads(encode_native_response(resp, decision, 0.00125))
    assert out == {
        "negotiated_model": "gpt-4o",
        "estimated_cost_usd": 0.0012,
        "routing_reason": "cheapest eligible",
        "response": {
            "id": "chatcmpl-9",
            "content": None,
            "tool_calls": [{"id": "call_1", "name": "f", "arguments": '{"a":1}'}],
            "finish_reason": "tool_calls",
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            "cost_usd": 0.00125,
        },
    }


def test_native_response_without_a_decided_model_uses_the_response_model() -> None:
    """With no model in the decision, the response's own model is reported."""
    resp = ChatResponse(id="x", model="mock-1", content="ok")
    out = orjson.loads(encode_native_response(resp, Decision(), 0.0))
    assert out["negotiated_model"] == "mock-1" and out["response"]["content"] == "ok"


def test_native_errors_render_like_openai_errors() -> None:
    """The native surface reuses the OpenAI error shape."""
    err = BadRequest("policy.mode: unknown mode 'x'")
    assert native_codec.render_error(err) == openai_codec.render_error(err)
    assert orjson.loads(native_codec.render_error(err))["error"]["type"] == "invalid_request_error"
