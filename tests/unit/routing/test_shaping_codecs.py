"""Output formats as the surfaces read them: native output_format, OpenAI response_format."""

from __future__ import annotations

import pytest

from tokenhub.api.native_codec import parse_native_request
from tokenhub.api.openai_codec import parse_chat_request
from tokenhub.config import MODES
from tokenhub.errors import BadRequest
from tokenhub.routing.shaping import OutputFormat, from_response_format

MESSAGES = [{"role": "user", "content": "hi"}]


def test_native_output_format_is_parsed() -> None:
    """/v1/chat's top-level output_format becomes NativeRequest.output_format."""
    body = {
        "request": {"messages": MESSAGES},
        "output_format": {"type": "json", "schema": '{"type": "object"}', "strip_think": True},
    }
    parsed = parse_native_request(body, "r1", MODES)
    assert parsed.output_format == OutputFormat("json", {"type": "object"}, None, True)
    assert (
        parse_native_request({"request": {"messages": MESSAGES}}, "r2", MODES).output_format is None
    )


def test_native_bad_output_format_is_400_naming_the_field() -> None:
    """An invalid schema in output_format is a BadRequest naming output_format.schema."""
    body = {"request": {"messages": MESSAGES}, "output_format": {"schema": {"type": 7}}}
    with pytest.raises(BadRequest, match=r"^output_format\.schema: not a valid JSON Schema"):
        parse_native_request(body, "r1", MODES)


def test_openai_json_schema_response_format_maps_to_json_with_schema() -> None:
    """A parsed chat-completions json_schema response_format yields its schema for shaping."""
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = {
        "model": "m",
        "messages": MESSAGES,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    }
    req = parse_chat_request(body, "r1")
    assert from_response_format(req.response_format) == OutputFormat("json", schema)
