"""The Anthropic messages codec: parsing, response, stream and error encoding."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from anthropic.types import ErrorResponse, Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from tests.unit.api.sse import data_event, named_event, sse_events
from tokenhub.api.anthropic_codec import (
    AnthropicStreamEncoder,
    encode_response,
    parse_messages_request,
    render_error,
)
from tokenhub.errors import BadRequest, ServiceUnavailable
from tokenhub.types import ChatResponse, Chunk, Dialect, ToolCall, ToolCallDelta, Usage

USER = {"role": "user", "content": "hi"}
EVENTS: TypeAdapter[RawMessageStreamEvent] = TypeAdapter(RawMessageStreamEvent)


def body(**fields: Any) -> dict[str, Any]:
    """A valid request with ``fields`` added or replaced."""
    return {"model": "claude-x", "max_tokens": 100, "messages": [USER], **fields}


# --- parsing ---------------------------------------------------------------------------


def test_minimal_request_keeps_model_limit_dialect_and_raw_body() -> None:
    """A plain request parses to one user message, dialect ANTHROPIC, raw = the same dict."""
    b = body()
    req = parse_messages_request(b, "rid")
    assert (req.model, req.max_tokens, req.request_id) == ("claude-x", 100, "rid")
    assert [(m.role, m.content) for m in req.messages] == [("user", "hi")]
    assert req.dialect is Dialect.ANTHROPIC and req.raw is b


def test_system_string_becomes_one_leading_system_message() -> None:
    """A string system prompt is the first neutral message."""
    req = parse_messages_request(body(system="be brief"), "r")
    assert [(m.role, m.content) for m in req.messages] == [("system", "be brief"), ("user", "hi")]


def test_system_blocks_become_one_system_message() -> None:
    """Several system text blocks stay together in one system message as text parts."""
    blocks = [
        {"type": "text", "text": "A.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "B."},
    ]
    req = parse_messages_request(body(system=blocks), "r")
    system = req.messages[0]
    assert system.role == "system" and system.text() == "A.B."
    assert [m.role for m in req.messages] == ["system", "user"]
    single = parse_messages_request(body(system=blocks[:1]), "r").messages[0]
    assert single.content == "A."


def test_user_text_and_image_blocks_become_parts() -> None:
    """Base64 and URL image sources become neutral image parts beside the text."""
    content = [
        {"type": "text", "text": "compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}},
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
    ]
    req = parse_messages_request(body(messages=[{"role": "user", "content": content}]), "r")
    assert req.messages[0].content == [
        {"type": "text", "text": "compare"},
        {"type": "image", "media_type": "image/png", "data": "AA=="},
        {"type": "image", "url": "https://x.test/a.jpg"},
    ]


def test_tool_use_and_tool_results_become_neutral_tool_messages() -> None:
    """tool_use gives ToolCalls with JSON text; each tool_result its own tool message."""
    assistant = {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "toolu_2", "name": "time", "input": {}},
        ],
    }
    results = {
        "role": "user",
        "content": [
            {"type": "text", "text": "here you go"},
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "rain"},
            {
                "type": "tool_result",
                "tool_use_id": "toolu_2",
                "is_error": False,
                "content": [{"type": "text", "text": "12:00"}, {"type": "text", "text": " UTC"}],
            },
        ],
    }
    req = parse_messages_request(body(messages=[USER, assistant, results]), "r")
    roles = [m.role for m in req.messages]
    assert roles == ["user", "assistant", "tool", "tool", "user"]
    a = req.messages[1]
    assert a.content == "Checking."
    assert a.tool_calls is not None and [tc.id for tc in a.tool_calls] == ["toolu_1", "toolu_2"]
    assert orjson.loads(a.tool_calls[0].arguments) == {"city": "Oslo"}
    assert (req.messages[2].tool_call_id, req.messages[2].content) == ("toolu_1", "rain")
    assert (req.messages[3].tool_call_id, req.messages[3].content) == ("toolu_2", "12:00 UTC")
    assert req.messages[4].content == [{"type": "text", "text": "here you go"}]


def test_tool_result_without_content_is_empty_text() -> None:
    """A tool_result with no content answers its call with empty text."""
    turn = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]}
    req = parse_messages_request(body(messages=[turn]), "r")
    assert [(m.role, m.content) for m in req.messages] == [("tool", "")]


def test_parameters_tools_and_metadata() -> None:
    """Sampling, stop sequences, tools, metadata.user_id and stream are read."""
    tool = {"name": "f", "description": "d", "input_schema": {"type": "object"}}
    req = parse_messages_request(
        body(
            temperature=0.3,
            top_p=0.9,
            top_k=5,
            stop_sequences=["\n\nHuman:"],
            tools=[tool],
            tool_choice={"type": "tool", "name": "f"},
            metadata={"user_id": "u-9"},
            stream=True,
        ),
        "r",
    )
    assert (req.temperature, req.top_p, req.stop) == (0.3, 0.9, ["\n\nHuman:"])
    assert req.tools is not None
    assert (req.tools[0].name, req.tools[0].parameters) == ("f", {"type": "object"})
    assert req.tool_choice == {"name": "f"} and req.user == "u-9"
    assert req.stream and req.stream_usage


@pytest.mark.parametrize(
    ("choice", "neutral"), [("auto", "auto"), ("any", "required"), ("none", "none")]
)
def test_tool_choice_types_map_to_neutral(choice: str, neutral: str) -> None:
    """auto/any/none become auto/required/none."""
    req = parse_messages_request(body(tool_choice={"type": choice}), "r")
    assert req.tool_choice == neutral


def _turn(role: str, *blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": role, "content": list(blocks)}


BAD: list[tuple[object, str]] = [
    ("x", "body: must be a JSON object"),
    ({"messages": [USER]}, "max_tokens: required"),
    (body(max_tokens=0), "max_tokens: must be a whole number >= 1"),
    (body(max_tokens="10"), "max_tokens: must be a whole number >= 1"),
    ({"max_tokens": 5}, "messages: must be a non-empty list"),
    (body(messages=[USER, {"role": "system", "content": "x"}]), "messages[1].role: must be one"),
    (body(messages=[{"role": "user", "content": []}]), "messages[0].content: must be a string"),
    (body(messages=[{"role": "user", "content": 5}]), "messages[0].content: must be a string"),
    (body(messages=[_turn("user", "x")]), "messages[0].content[0]: must be an object"),  # type: ignore[arg-type]
    (
        body(messages=[_turn("assistant", {"type": "image"})]),
        "messages[0].content[0].type: must be one of text, tool_use",
    ),
    (
        body(messages=[_turn("user", {"type": "tool_use"})]),
        "messages[0].content[0].type: must be one of text, image, tool_result",
    ),
    (
        body(messages=[_turn("assistant", {"type": "tool_use", "id": "t", "name": "f"})]),
        "messages[0].content[0].input: must be an object",
    ),
    (
        body(messages=[_turn("assistant", {"type": "tool_use", "name": "f", "input": {}})]),
        "messages[0].content[0].id: must be a non-empty string",
    ),
    (
        body(messages=[_turn("user", {"type": "tool_result", "content": "x"})]),
        "messages[0].content[0].tool_use_id: must be a non-empty string",
    ),
    (
        body(messages=[_turn("user", {"type": "tool_result", "tool_use_id": "t", "content": 1})]),
        "messages[0].content[0].content: must be a string or a list",
    ),
    (
        body(
            messages=[
                _turn(
                    "user",
                    {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "doc"}]},
                )
            ]
        ),
        "messages[0].content[0].content[0].type: must be one of text, image",
    ),
    (
        body(messages=[_turn("user", {"type": "image", "source": {"type": "file"}})]),
        "messages[0].content[0].source.type: must be one of base64, url",
    ),
    (
        body(messages=[_turn("user", {"type": "image", "source": {"type": "base64"}})]),
        "messages[0].content[0].source.media_type: must be a non-empty string",
    ),
    (
        body(messages=[_turn("user", {"type": "text", "text": None})]),
        "messages[0].content[0].text: must be a string",
    ),
    (body(model=1), "model: must be a string"),
    (body(temperature=1.5), "temperature: must be a number between 0 and 1"),
    (body(top_p=-0.1), "top_p: must be a number between 0 and 1"),
    (body(top_k=-1), "top_k: must be a whole number >= 0"),
    (body(stop_sequences="x"), "stop_sequences: must be a list of strings"),
    (body(system=5), "system: must be a string or a list of text blocks"),
    (body(system=[{"type": "image"}]), "system[0].type: must be one of text"),
    (body(tools=[{"name": "f"}]), "tools[0].input_schema: must be an object"),
    (body(tools=[{"input_schema": {}}]), "tools[0].name: must be a non-empty string"),
    (
        body(tools=[{"type": "web_search_20250305", "name": "w"}]),
        "tools[0].type: must be custom",
    ),
    (body(tool_choice="auto"), "tool_choice: must be an object"),
    (body(tool_choice={"type": "x"}), "tool_choice.type: must be one of auto, any, none, tool"),
    (body(tool_choice={"type": "tool"}), "tool_choice.name: must be a non-empty string"),
    (body(metadata={"user_id": 5}), "metadata.user_id: must be a string"),
    (body(metadata=[]), "metadata: must be an object"),
    (body(stream=1), "stream: must be a boolean"),
]


@pytest.mark.parametrize(("bad", "message"), BAD)
def test_invalid_input_is_a_bad_request_naming_the_field(bad: object, message: str) -> None:
    """Each invalid body raises BadRequest whose message starts with the field's path."""
    with pytest.raises(BadRequest) as info:
        parse_messages_request(bad, "r")
    assert info.value.message.startswith(message), info.value.message


# --- whole responses and errors --------------------------------------------------------


def test_neutral_response_encodes_to_a_valid_anthropic_message() -> None:
    """A translated answer validates as anthropic's Message with text and tool_use blocks."""
    resp = ChatResponse(
        id="chatcmpl-1",
        model="gpt-4o",
        content="Checking.",
        tool_calls=[
            ToolCall("call_1", "weather", '{"city":"Oslo"}'),
            ToolCall("call_2", "broken", '{"city":'),
        ],
        finish_reason="tool_calls",
        usage=Usage(20, 9),
        dialect=Dialect.OPENAI,
        raw=b'{"object":"chat.completion"}',
    )
    msg = Message.model_validate_json(encode_response(resp))
    assert msg.id == "msg_chatcmpl-1" and msg.model == "gpt-4o"
    assert msg.stop_reason == "tool_use" and msg.stop_sequence is None
    text, call, broken = msg.content
    assert text.type == "text" and text.text == "Checking."
    assert call.type == "tool_use" and (call.id, call.name) == ("call_1", "weather")
    assert call.input == {"city": "Oslo"}
    assert broken.type == "tool_use" and broken.input == {}  # invalid JSON arguments
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (20, 9)


@pytest.mark.parametrize(
    ("finish", "stop"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"), ("x", "end_turn")],
)
def test_finish_reasons_map_to_stop_reasons(finish: str, stop: str) -> None:
    """Neutral finish reasons are spelled the Anthropic way; empty content is no block."""
    resp = ChatResponse(id="msg_1", model="m", content="", finish_reason=finish)
    msg = Message.model_validate_json(encode_response(resp))
    assert msg.stop_reason == stop and msg.content == [] and msg.id == "msg_1"


def test_anthropic_upstream_body_passes_through_untouched() -> None:
    """When the upstream spoke Anthropic, its bytes are returned as they are."""
    raw = b'{"id":"msg_up", "type":"message"}'
    resp = ChatResponse(id="i", model="m", content="c", dialect=Dialect.ANTHROPIC, raw=raw)
    assert encode_response(resp) is raw


def test_render_error_has_the_anthropic_shape() -> None:
    """Errors render as {"type": "error", "error": {type, message}} plus details when set."""
    out = render_error(BadRequest("max_tokens: required"))
    parsed = TypeAdapter(ErrorResponse).validate_json(out)
    assert parsed.error.type == "invalid_request_error"
    assert parsed.error.message == "max_tokens: required"
    detailed = orjson.loads(render_error(ServiceUnavailable("busy", details={"retry": 2})))
    assert detailed["error"] == {
        "type": "overloaded_error",
        "message": "busy",
        "details": {"retry": 2},
    }


# --- streams ---------------------------------------------------------------------------


def _decode(data: bytes) -> list[Any]:
    """Validate each event with the SDK's union, checking event name = data type."""
    out = []
    for name, payload in sse_events(data):
        event = EVENTS.validate_json(payload)
        assert name == event.type
        out.append(event)
    return out


def _assemble(events: list[Any]) -> dict[str, Any]:
    """Rebuild the message the way a client accumulates the stream."""
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    blocks: dict[int, dict[str, Any]] = {}
    open_blocks: set[int] = set()
    result: dict[str, Any] = {"start": events[0].message}
    for ev in events[1:-1]:
        if ev.type == "content_block_start":
            assert ev.index == len(blocks) and not open_blocks  # increasing, one at a time
            blocks[ev.index] = {"type": ev.content_block.type, "text": "", "json": ""}
            blocks[ev.index]["block"] = ev.content_block
            open_blocks.add(ev.index)
        elif ev.type == "content_block_delta":
            assert ev.index in open_blocks
            key = "text" if ev.delta.type == "text_delta" else "json"
            blocks[ev.index][key] += ev.delta.text if key == "text" else ev.delta.partial_json
        elif ev.type == "content_block_stop":
            open_blocks.remove(ev.index)
        else:
            assert ev.type == "message_delta" and not open_blocks
            result["delta"] = ev
    result["blocks"] = [blocks[i] for i in sorted(blocks)]
    return result


def _openai_upstream() -> list[Chunk]:
    """What an OpenAI adapter yields for text, two tool calls, finish, then usage."""
    o = Dialect.OPENAI

    def c(**kw: Any) -> Chunk:
        return Chunk(dialect=o, raw=data_event({"choices": []}), **kw)

    return [
        c(role="assistant", text=""),
        c(text="Hello"),
        c(text=" world"),
        c(tool_calls=[ToolCallDelta(0, id="call_1", name="weather", arguments="")]),
        c(tool_calls=[ToolCallDelta(0, arguments='{"city":')]),
        c(tool_calls=[ToolCallDelta(0, arguments='"Paris"}')]),
        c(tool_calls=[ToolCallDelta(1, id="call_2", name="clock", arguments="{}")]),
        c(finish_reason="tool_calls"),
        c(usage=Usage(21, 15)),
        Chunk(dialect=o, raw=b"data: [DONE]\n\n"),
    ]


def test_openai_chunks_become_a_valid_anthropic_event_stream() -> None:
    """Text and tool calls become ordered blocks; message_delta waits for the usage chunk."""
    enc = AnthropicStreamEncoder(response_id="msg_r", model="gpt-4o", input_tokens=18)
    outputs = [enc.encode(c) for c in _openai_upstream()]
    finish_output = outputs[7]
    assert b"content_block_stop" in finish_output and b"message_delta" not in finish_output
    assert b"message_delta" in outputs[8]
    assert enc.finish() == b""
    msg = _assemble(_decode(b"".join(outputs)))
    assert msg["start"].id == "msg_r" and msg["start"].usage.input_tokens == 18
    text, weather, clock = msg["blocks"]
    assert text["text"] == "Hello world"
    assert (weather["block"].id, weather["block"].name) == ("call_1", "weather")
    assert orjson.loads(weather["json"]) == {"city": "Paris"}
    assert clock["block"].name == "clock" and orjson.loads(clock["json"]) == {}
    delta = msg["delta"]
    assert delta.delta.stop_reason == "tool_use"
    assert (delta.usage.output_tokens, delta.usage.input_tokens) == (15, 21)


def test_finish_closes_the_message_when_usage_never_came() -> None:
    """Without a usage chunk, finish() sends message_delta (mapped reason) and message_stop."""
    enc = AnthropicStreamEncoder(response_id="msg_r", model="m", input_tokens=3)
    data = enc.encode(Chunk(text="cut")) + enc.encode(Chunk(finish_reason="length"))
    data += enc.finish()
    msg = _assemble(_decode(data))
    assert msg["blocks"][0]["text"] == "cut"
    assert msg["delta"].delta.stop_reason == "max_tokens"
    assert msg["delta"].usage.output_tokens == 0 and msg["delta"].usage.input_tokens is None


def test_empty_stream_still_is_a_complete_message() -> None:
    """finish() on a stream that produced nothing yields start, delta and stop."""
    enc = AnthropicStreamEncoder(response_id="msg_e", model="m", input_tokens=0)
    events = _decode(enc.finish())
    assert [e.type for e in events] == ["message_start", "message_delta", "message_stop"]
    assert enc.finish() == b""


def test_tool_call_without_id_gets_a_generated_one() -> None:
    """A tool call delta lacking an id still opens a tool_use block with an id."""
    enc = AnthropicStreamEncoder(response_id="msg_t", model="m", input_tokens=0)
    data = enc.encode(Chunk(tool_calls=[ToolCallDelta(0, name="f", arguments="{}")]))
    msg = _assemble(_decode(data + enc.finish()))
    assert msg["blocks"][0]["block"].id.startswith("toolu_")


def test_anthropic_chunks_pass_through_byte_for_byte() -> None:
    """Upstream Anthropic events are written unchanged and finish() adds nothing."""
    a = Dialect.ANTHROPIC
    raws = [
        named_event("message_start", {"type": "message_start"}),
        named_event("ping", {"type": "ping"}),
        named_event("content_block_delta", {"type": "content_block_delta"}),
        named_event("message_stop", {"type": "message_stop"}),
    ]
    enc = AnthropicStreamEncoder(response_id="msg_p", model="m", input_tokens=0)
    chunks = [Chunk(dialect=a, raw=raws[0], role="assistant"), Chunk(dialect=a, raw=raws[1])]
    chunks += [Chunk(text="x", dialect=a, raw=raws[2]), Chunk(dialect=a, raw=raws[3])]
    assert [enc.encode(c) for c in chunks] == raws
    assert enc.finish() == b""


def test_error_event_has_the_anthropic_stream_shape() -> None:
    """A mid-stream failure is one `event: error` with the error object; nothing after."""
    enc = AnthropicStreamEncoder(response_id="msg_x", model="m", input_tokens=0)
    enc.encode(Chunk(text="partial"))
    out = enc.error_event(ServiceUnavailable("upstream went away"))
    assert out.startswith(b"event: error\ndata: ") and out.endswith(b"\n\n")
    [(name, payload)] = sse_events(out)
    error = TypeAdapter(ErrorResponse).validate_json(payload).error
    assert name == "error" and error.type == "overloaded_error"
    assert enc.finish() == b"" and enc.encode(Chunk(text="late")) == b""
