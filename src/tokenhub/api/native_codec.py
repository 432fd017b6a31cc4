"""TokenHub's own ``/v1/chat`` envelope: a chat request plus routing policy.

Body::

    {"request": {"messages": [...OpenAI-style...], "model_hint": str,
                 "estimated_input_tokens": int, "parameters": {temperature, top_p,
                 max_tokens, stop, tools, tool_choice, response_format, seed, user},
                 "stream": bool, "meta": {...}},
     "policy": {"mode": str, "max_budget_usd": 0-100, "max_latency_ms": 0-300000,
                "min_weight": 0-10},
     "capabilities": {"planning": bool, ...},
     "output_format": {"type": "json"|"markdown"|"text"|"xml", "schema": object or JSON
                       string, "max_tokens": int, "strip_think": bool}}

``output_format`` is parsed by ``routing.shaping.parse_output_format`` (a bare type
name such as ``"json"`` is accepted too); shaping is not applied to streams.

Messages and parameters are parsed by the OpenAI codec under this envelope's field
paths (``request.messages[0].role``, ``request.parameters.temperature``). The request
keeps ``dialect=NONE``: no provider speaks this envelope, so there is no pass-through.

Streaming: a native stream is an OpenAI ``chat.completion.chunk`` stream, written by
``openai_codec.OpenAIStreamEncoder``; native requests always ask for the usage chunk
(``stream_usage``), since the envelope is about cost. Errors render like OpenAI errors
(``render_error`` here is ``openai_codec.render_error``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import orjson

from tokenhub.api import openai_codec
from tokenhub.api.validate import (
    as_object,
    fail,
    opt_bool,
    opt_int,
    opt_number,
    opt_object,
    opt_str,
)
from tokenhub.routing.shaping import OutputFormat, parse_output_format
from tokenhub.types import ChatRequest, ChatResponse, Decision

render_error = openai_codec.render_error


@dataclass(slots=True)
class NativeRequest:
    """A parsed ``/v1/chat`` body: the neutral request and the client's routing policy."""

    chat: ChatRequest
    mode: str | None = None
    max_budget_usd: float | None = None
    max_latency_ms: int | None = None
    min_weight: int | None = None
    capabilities: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    output_format: OutputFormat | None = None


def parse_native_request(body: object, request_id: str, modes: Collection[str]) -> NativeRequest:
    """Parse a native envelope (raises BadRequest naming the field)."""
    obj = as_object(body, "body")
    request = as_object(obj.get("request"), "request")
    chat = _chat(request, request_id)
    policy = opt_object(obj, "policy") or {}
    capabilities = opt_object(obj, "capabilities") or {}
    planning = opt_bool(capabilities, "planning", "capabilities")
    mode = _mode(policy, modes)
    return NativeRequest(
        chat=chat,
        mode="planning" if mode is None and planning else mode,
        max_budget_usd=opt_number(policy, "max_budget_usd", "policy", lo=0, hi=100),
        max_latency_ms=opt_int(policy, "max_latency_ms", "policy", lo=0, hi=300000),
        min_weight=opt_int(policy, "min_weight", "policy", lo=0, hi=10),
        capabilities=capabilities,
        meta=opt_object(request, "meta", "request") or {},
        output_format=_output_format(obj),
    )


def _chat(request: dict[str, Any], request_id: str) -> ChatRequest:
    chat = ChatRequest(
        messages=openai_codec.parse_messages(request.get("messages"), "request.messages"),
        model=opt_str(request, "model_hint", "request"),
        estimated_input_tokens=opt_int(request, "estimated_input_tokens", "request", lo=0),
        request_id=request_id,
    )
    parameters = opt_object(request, "parameters", "request")
    if parameters is not None:
        openai_codec.apply_parameters(chat, parameters, "request.parameters")
    chat.stream = opt_bool(request, "stream", "request") or False
    chat.stream_usage = chat.stream
    return chat


def _output_format(obj: dict[str, Any]) -> OutputFormat | None:
    value = obj.get("output_format")
    return None if value is None else parse_output_format(value, "output_format")


def _mode(policy: dict[str, Any], modes: Collection[str]) -> str | None:
    mode = opt_str(policy, "mode", "policy")
    if mode is not None and mode not in modes:
        fail("policy.mode", f"unknown mode {mode!r} (one of {', '.join(modes)})")
    return mode


def encode_native_response(resp: ChatResponse, decision: Decision, cost_usd: float) -> bytes:
    """The native answer: the routing outcome and the response in neutral shape."""
    usage = resp.usage
    return orjson.dumps(
        {
            "negotiated_model": decision.model.id if decision.model else resp.model,
            "estimated_cost_usd": decision.estimated_cost_usd,
            "routing_reason": decision.reason,
            "response": {
                "id": resp.id,
                "content": resp.content,
                "tool_calls": [
                    {"id": tc.id, "name": tc.name, "arguments": tc.arguments}
                    for tc in resp.tool_calls
                ],
                "finish_reason": resp.finish_reason,
                "usage": {
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                    "total_tokens": usage.total_tokens,
                },
                "cost_usd": cost_usd,
            },
        }
    )
