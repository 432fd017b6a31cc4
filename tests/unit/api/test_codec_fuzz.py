"""Property tests: whatever JSON a client sends, parsers answer a result or BadRequest."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenhub.api.anthropic_codec import parse_messages_request
from tokenhub.api.native_codec import parse_native_request
from tokenhub.api.openai_codec import parse_chat_request
from tokenhub.config import MODES
from tokenhub.errors import BadRequest
from tokenhub.types import ChatRequest

# Field names the parsers look at, so random objects reach past the first check.
KEYS = [
    "role", "content", "type", "text", "messages", "model", "max_tokens", "tool_calls",
    "function", "name", "arguments", "image_url", "url", "source", "media_type", "data",
    "tool_use_id", "tool_call_id", "input", "id", "tools", "tool_choice", "system",
    "request", "policy", "parameters", "mode", "capabilities", "planning", "stream",
]  # fmt: skip
ROLES = ["user", "assistant", "system", "tool", "developer"]
TYPES = ["text", "image_url", "image", "tool_use", "tool_result", "function", "base64"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(ROLES + TYPES)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=5)
    ),
    max_leaves=24,
)

OPENAI_BODY: dict[str, Any] = {
    "model": "m",
    "messages": [
        {"role": "developer", "content": "s"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "t"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
            ],
        },
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c", "content": "r"},
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "response_format": {"type": "json_schema", "json_schema": {"name": "n"}},
    "stop": ["x"],
    "temperature": 1,
    "stream": True,
    "stream_options": {"include_usage": True},
}
ANTHROPIC_BODY: dict[str, Any] = {
    "model": "m",
    "max_tokens": 5,
    "system": [{"type": "text", "text": "s"}],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "t"},
                {"type": "image", "source": {"type": "base64", "media_type": "i", "data": "A"}},
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "u", "name": "f", "input": {"a": [1]}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "u",
                    "content": [{"type": "text", "text": "r"}],
                }
            ],
        },
    ],
    "tools": [{"name": "f", "input_schema": {}}],
    "tool_choice": {"type": "tool", "name": "f"},
    "metadata": {"user_id": "u"},
    "stop_sequences": ["x"],
}
NATIVE_BODY: dict[str, Any] = {
    "request": {
        "messages": OPENAI_BODY["messages"],
        "model_hint": "m",
        "estimated_input_tokens": 3,
        "parameters": {"temperature": 0.5, "tools": OPENAI_BODY["tools"], "stop": "x"},
        "stream": False,
        "meta": {"k": "v"},
    },
    "policy": {"mode": "cheap", "max_budget_usd": 1, "max_latency_ms": 10, "min_weight": 1},
    "capabilities": {"planning": True},
}

Parser = Callable[[object], ChatRequest]
PARSERS: dict[str, tuple[Parser, dict[str, Any]]] = {
    "openai": (lambda b: parse_chat_request(b, "r"), OPENAI_BODY),
    "anthropic": (lambda b: parse_messages_request(b, "r"), ANTHROPIC_BODY),
    "native": (lambda b: parse_native_request(b, "r", MODES).chat, NATIVE_BODY),
}
FIELD_PATH = re.compile(r"^[A-Za-z_][\w.\[\]]*: \S")
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _outcome(parse: Parser, value: object) -> None:
    """Parse ``value``; only a ChatRequest or a field-naming BadRequest is acceptable."""
    try:
        assert isinstance(parse(value), ChatRequest)
    except BadRequest as err:
        assert FIELD_PATH.match(err.message), err.message


def _paths(value: object, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*prefix, i))


def _replaced(body: dict[str, Any], path: tuple[Any, ...], value: object) -> object:
    if not path:
        return value
    out = copy.deepcopy(body)
    target: Any = out
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return out


@pytest.mark.parametrize("dialect", sorted(PARSERS))
def test_valid_fuzz_bases_parse(dialect: str) -> None:
    """The base bodies the mutation tests start from are themselves valid."""
    parse, base = PARSERS[dialect]
    assert parse(copy.deepcopy(base)).messages


@pytest.mark.parametrize("dialect", sorted(PARSERS))
@FUZZ
@given(value=json_values)
def test_random_json_never_raises_anything_but_bad_request(dialect: str, value: object) -> None:
    """Any JSON value as a whole body yields a request or a BadRequest naming a field."""
    _outcome(PARSERS[dialect][0], value)


@pytest.mark.parametrize("dialect", sorted(PARSERS))
@FUZZ
@given(data=st.data())
def test_mutated_valid_bodies_never_raise_anything_but_bad_request(
    dialect: str, data: st.DataObject
) -> None:
    """Replacing any one field of a valid body with random JSON never escapes as a crash."""
    parse, base = PARSERS[dialect]
    path = data.draw(st.sampled_from(list(_paths(base))))
    _outcome(parse, _replaced(base, path, data.draw(json_values)))
