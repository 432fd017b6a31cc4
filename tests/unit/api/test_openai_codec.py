"""The OpenAI chat-completions codec: parsing, response, stream and error encoding."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types import ErrorObject
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.unit.api.sse import data_event, named_event, sse_events
from tokenhub.api.openai_codec import (
    OpenAIStreamEncoder,
    encode_response,
    parse_chat_request,
    render_error,
)
from tokenhub.errors import BadRequest, NoEligibleModel
from tokenhub.types import (
    ChatResponse,
    Chunk,
    Dialect,
    ToolCall,
    ToolCallDelta,
    Usage,
)

USER = {"role": "user", "content": "hi"}


def body(**fields: Any) -> dict[str, Any]:
    """A valid request with ``fields`` added or replaced."""
    return {"model": "gpt-4o", "messages": [USER], **fields}


# --- parsing ---------------------------------------------------------------------------


def test_minimal_request_keeps_model_dialect_and_raw_body() -> None:
    """A plain request parses to one user message, dialect OPENAI, raw = the same dict."""
    b = body()
    req = parse_chat_request(b, "rid-1")
    assert req.model == "gpt-4o"
    assert [(m.role, m.content) for m in req.messages] == [("user", "hi")]
    assert req.dialect is Dialect.OPENAI
    assert req.raw is b
    assert req.request_id == "rid-1"
    assert req.stream is False and req.stream_usage is False


def test_model_is_optional() -> None:
    """A request without a model leaves the choice to the router."""
    assert parse_chat_request({"messages": [USER]}, "r").model is None


def test_developer_role_becomes_system_and_name_is_kept() -> None:
    """``developer`` maps to the neutral ``system`` role; ``name`` survives."""
    msgs = [{"role": "developer", "content": "be brief"}, {**USER, "name": "ann"}]
    req = parse_chat_request(body(messages=msgs), "r")
    assert req.messages[0].role == "system"
    assert req.messages[1].name == "ann"


def test_image_parts_become_neutral_image_parts() -> None:
    """http(s) image URLs keep the URL; data: URLs become media type + base64 data."""
    parts = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "https://x.test/cat.png", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    req = parse_chat_request(body(messages=[{"role": "user", "content": parts}]), "r")
    assert req.messages[0].content == [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "url": "https://x.test/cat.png"},
        {"type": "image", "media_type": "image/png", "data": "iVBORw0KGgo="},
    ]


def test_assistant_tool_calls_and_tool_results() -> None:
    """Assistant tool calls become ToolCalls; tool messages keep their tool_call_id."""
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
    }
    msgs = [
        USER,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    req = parse_chat_request(body(messages=msgs), "r")
    assistant, tool = req.messages[1], req.messages[2]
    assert assistant.content is None
    assert assistant.tool_calls == [ToolCall("call_1", "weather", '{"city":"Paris"}')]
    assert (tool.role, tool.tool_call_id, tool.content) == ("tool", "call_1", "sunny")


def test_sampling_tool_and_format_parameters() -> None:
    """Every parameter TokenHub uses is read into the neutral request."""
    tool = {
        "type": "function",
        "function": {"name": "f", "description": "d", "parameters": {"type": "object"}},
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "s", "schema": {}}}
    req = parse_chat_request(
        body(
            max_tokens=10,
            max_completion_tokens=20,
            temperature=1.5,
            top_p=0.5,
            stop="END",
            tools=[tool],
            tool_choice={"type": "function", "function": {"name": "f"}},
            response_format=fmt,
            seed=7,
            user="u-1",
        ),
        "r",
    )
    assert req.max_tokens == 20  # max_completion_tokens supersedes max_tokens
    assert (req.temperature, req.top_p, req.stop) == (1.5, 0.5, ["END"])
    assert req.tools is not None and req.tools[0].name == "f"
    assert req.tools[0].description == "d" and req.tools[0].parameters == {"type": "object"}
    assert req.tool_choice == {"name": "f"}
    assert req.response_format == fmt
    assert (req.seed, req.user) == (7, "u-1")


@pytest.mark.parametrize("choice", ["auto", "none", "required"])
def test_string_tool_choices_pass_unchanged(choice: str) -> None:
    """The three string tool choices are neutral already."""
    assert parse_chat_request(body(tool_choice=choice), "r").tool_choice == choice


def test_stream_usage_needs_stream_and_include_usage() -> None:
    """stream_options.include_usage sets stream_usage only for streamed requests."""
    opts = {"include_usage": True}
    streamed = parse_chat_request(body(stream=True, stream_options=opts), "r")
    assert streamed.stream and streamed.stream_usage
    assert not parse_chat_request(body(stream_options=opts), "r").stream_usage


def test_nulls_count_as_absent() -> None:
    """Optional fields sent as null are treated as not sent."""
    nulls = dict.fromkeys(("temperature", "top_p", "stop", "tools", "tool_choice", "seed"))
    req = parse_chat_request(body(**nulls, stream=None, stream_options=None), "r")
    assert req.temperature is None and req.tools is None and req.stream is False


def _tool_call(**fn: Any) -> dict[str, Any]:
    return {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": fn}]}


BAD: list[tuple[object, str]] = [
    ([], "body: must be a JSON object"),
    ({}, "messages: must be a non-empty list"),
    (body(messages=[]), "messages: must be a non-empty list"),
    (body(messages="hi"), "messages: must be a non-empty list"),
    (body(messages=["hi"]), "messages[0]: must be an object"),
    (
        body(messages=[USER, {"role": "bot", "content": "x"}]),
        "messages[1].role: must be one of system, developer, user, assistant, tool",
    ),
    (body(messages=[{"content": "x"}]), "messages[0].role: must be one of"),
    (body(messages=[{"role": "user"}]), "messages[0].content: must be a string or a non-empty"),
    (body(messages=[{"role": "user", "content": []}]), "messages[0].content: must be"),
    (
        body(messages=[{"role": "user", "content": [{"type": "input_audio"}]}]),
        "messages[0].content[0].type: must be one of text, image_url",
    ),
    (
        body(messages=[{"role": "user", "content": [{"type": "text", "text": 5}]}]),
        "messages[0].content[0].text: must be a string",
    ),
    (
        body(messages=[{"role": "system", "content": [{"type": "image_url"}]}]),
        "messages[0].content[0].type: must be text",
    ),
    (
        body(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}],
                }
            ]
        ),
        "messages[0].content[0].image_url.url: must be an http(s) URL or a base64 data: URL",
    ),
    (
        body(
            messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:x"}}]}
            ]
        ),
        "messages[0].content[0].image_url.url: must be an http(s) URL",
    ),
    (
        body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": "u"}]}]),
        "messages[0].content[0].image_url: must be an object",
    ),
    (
        body(messages=[USER, {"role": "tool", "content": "x"}]),
        "messages[1].tool_call_id: must be a non-empty string",
    ),
    (
        body(messages=[{"role": "assistant", "tool_calls": [{"id": "c"}]}]),
        "messages[0].tool_calls[0].function: must be an object",
    ),
    (
        body(messages=[{"role": "assistant", "tool_calls": {"id": "c"}}]),
        "messages[0].tool_calls: must be a list",
    ),
    (
        body(messages=[_tool_call(name="f", arguments={"a": 1})]),
        "messages[0].tool_calls[0].function.arguments: must be a string",
    ),
    (
        body(messages=[_tool_call(arguments="{}")]),
        "messages[0].tool_calls[0].function.name: must be a non-empty string",
    ),
    (body(messages=[{**USER, "name": 3}]), "messages[0].name: must be a string"),
    (body(model=5), "model: must be a string"),
    (body(temperature=3), "temperature: must be a number between 0 and 2"),
    (body(temperature=True), "temperature: must be a number between 0 and 2"),
    (body(temperature="1"), "temperature: must be a number between 0 and 2"),
    (body(top_p=1.5), "top_p: must be a number between 0 and 1"),
    (body(max_tokens=0), "max_tokens: must be a whole number >= 1"),
    (body(max_tokens=1.5), "max_tokens: must be a whole number >= 1"),
    (body(max_completion_tokens=-1), "max_completion_tokens: must be a whole number >= 1"),
    (body(stop=5), "stop: must be a string or a list of strings"),
    (body(stop=["a", 1]), "stop: must be a list of strings"),
    (body(tools={}), "tools: must be a list"),
    (body(tools=[{"type": "retrieval"}]), "tools[0].type: must be one of function"),
    (
        body(tools=[{"type": "function", "function": {"description": "d"}}]),
        "tools[0].function.name: must be a non-empty string",
    ),
    (
        body(tools=[{"type": "function", "function": {"name": "f", "parameters": []}}]),
        "tools[0].function.parameters: must be an object",
    ),
    (body(tool_choice="maybe"), "tool_choice: must be auto, none, required"),
    (body(tool_choice={"type": "function", "function": {}}), "tool_choice.function.name"),
    (body(tool_choice={"type": "tool"}), "tool_choice: must be auto, none, required"),
    (
        body(response_format={"type": "xml"}),
        "response_format.type: must be one of text, json_object, json_schema",
    ),
    (body(response_format="json"), "response_format: must be an object"),
    (
        body(response_format={"type": "json_schema"}),
        "response_format.json_schema: must be an object",
    ),
    (body(seed="1"), "seed: must be a whole number"),
    (body(user=5), "user: must be a string"),
    (body(stream="yes"), "stream: must be a boolean"),
    (body(stream_options=[]), "stream_options: must be an object"),
    (
        body(stream=True, stream_options={"include_usage": "y"}),
        "stream_options.include_usage: must be a boolean",
    ),
    (body(n=2), "n: only 1 is supported"),
]


@pytest.mark.parametrize(("bad", "message"), BAD)
def test_invalid_input_is_a_bad_request_naming_the_field(bad: object, message: str) -> None:
    """Each invalid body raises BadRequest whose message starts with the field's path."""
    with pytest.raises(BadRequest) as info:
        parse_chat_request(bad, "r")
    assert info.value.message.startswith(message), info.value.message
    assert info.value.status == 400


# --- whole responses -------------------------------------------------------------------


def test_neutral_response_encodes_to_a_valid_chat_completion() -> None:
    """A translated answer validates as openai's ChatCompletion with every field in place."""
    resp = ChatResponse(
        id="abc",
        model="claude-x",
        content="Let me check.",
        tool_calls=[ToolCall("toolu_1", "weather", '{"city":"Paris"}')],
        finish_reason="tool_calls",
        usage=Usage(11, 7),
        created=1700000000,
        dialect=Dialect.ANTHROPIC,
        raw=b'{"type":"message"}',  # another dialect's bytes must not leak through
    )
    out = ChatCompletion.model_validate_json(encode_response(resp))
    assert out.id == "chatcmpl-abc" and out.model == "claude-x" and out.created == 1700000000
    choice = out.choices[0]
    assert choice.message.content == "Let me check."
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert (call.id, call.function.name, call.function.arguments) == (  # type: ignore[union-attr]
        "toolu_1",
        "weather",
        '{"city":"Paris"}',
    )
    assert out.usage is not None
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.total_tokens) == (
        11,
        7,
        18,
    )


def test_tool_only_answer_has_null_content_and_unknown_finish_becomes_stop() -> None:
    """No text gives content null; an unknown finish reason is reported as stop."""
    resp = ChatResponse(id="chatcmpl-1", model="m", content=None, finish_reason="weird")
    out = ChatCompletion.model_validate_json(encode_response(resp))
    assert out.id == "chatcmpl-1" and out.created > 0
    assert out.choices[0].message.content is None
    assert out.choices[0].finish_reason == "stop"


def test_openai_upstream_body_passes_through_untouched() -> None:
    """When the upstream spoke OpenAI, its bytes are returned as they are."""
    raw = b'{"id":"chatcmpl-up","object":"chat.completion" , "x":1}'
    resp = ChatResponse(id="i", model="m", content="c", dialect=Dialect.OPENAI, raw=raw)
    assert encode_response(resp) is raw


# --- errors ----------------------------------------------------------------------------


def test_render_error_has_the_openai_shape() -> None:
    """Errors render as {"error": {message, type, param, code}}."""
    out = orjson.loads(render_error(BadRequest("temperature: must be a number")))
    assert out == {
        "error": {
            "message": "temperature: must be a number",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    assert ErrorObject.model_validate(out["error"]).type == "invalid_request_error"


def test_render_error_includes_details_and_code() -> None:
    """Details and a class-level code are rendered inside the error object."""
    err = NoEligibleModel("no model fits", details={"gpt-4o": "over budget"})
    out = orjson.loads(render_error(err))["error"]
    assert out["code"] == "no_eligible_model" and out["type"] == "no_eligible_model"
    assert out["details"] == {"gpt-4o": "over budget"}


# --- streams: translation --------------------------------------------------------------


def _accumulate(data: bytes) -> tuple[ChatCompletionStreamState, list[ChatCompletionChunk]]:
    """Validate each event as a ChatCompletionChunk and assemble them like the SDK does."""
    events = sse_events(data)
    assert events[-1] == (None, "[DONE]")
    assert [e for e in events if e[1] == "[DONE]"] == [(None, "[DONE]")]
    state = ChatCompletionStreamState()
    chunks = [ChatCompletionChunk.model_validate_json(d) for _, d in events[:-1]]
    for chunk in chunks:
        state.handle_chunk(chunk)
    return state, chunks


def _run(enc: OpenAIStreamEncoder, chunks: list[Chunk]) -> bytes:
    return b"".join(enc.encode(c) for c in chunks) + enc.finish()


def test_neutral_text_stream_translates_with_role_first_and_usage_last() -> None:
    """Neutral text chunks become chunk events; usage comes last, then [DONE] once."""
    enc = OpenAIStreamEncoder(response_id="chatcmpl-r", model="m", include_usage=True)
    data = _run(
        enc,
        [
            Chunk(text="Hel"),
            Chunk(),  # a ping: nothing to write
            Chunk(text="lo"),
            Chunk(finish_reason="stop", usage=Usage(5, 2)),
        ],
    )
    state, chunks = _accumulate(data)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 7
    final = state.get_final_completion()
    assert final.choices[0].message.content == "Hello"
    assert final.choices[0].finish_reason == "stop"
    assert {c.id for c in chunks} == {"chatcmpl-r"}
    assert enc.finish() == b""


def test_usage_is_not_sent_unless_asked() -> None:
    """Without include_usage no usage chunk is written."""
    enc = OpenAIStreamEncoder(response_id="r", model="m", include_usage=False)
    data = _run(enc, [Chunk(text="a"), Chunk(finish_reason="length"), Chunk(usage=Usage(1, 1))])
    _, chunks = _accumulate(data)
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"


def _anthropic_upstream() -> list[Chunk]:
    """What an Anthropic adapter yields: raw events plus neutral fields."""
    a = Dialect.ANTHROPIC
    ev = named_event
    return [
        Chunk(role="assistant", usage=Usage(12, 0), dialect=a, raw=ev("message_start", {})),
        Chunk(dialect=a, raw=ev("ping", {"type": "ping"})),
        Chunk(text="Checking", dialect=a, raw=ev("content_block_delta", {})),
        Chunk(
            tool_calls=[ToolCallDelta(1, id="toolu_9", name="weather")],
            dialect=a,
            raw=ev("content_block_start", {}),
        ),
        Chunk(tool_calls=[ToolCallDelta(1, arguments='{"city":')], dialect=a, raw=b"x"),
        Chunk(tool_calls=[ToolCallDelta(1, arguments='"Oslo"}')], dialect=a, raw=b"x"),
        Chunk(finish_reason="tool_calls", usage=Usage(0, 30), dialect=a, raw=b"x"),
        Chunk(dialect=a, raw=ev("message_stop", {"type": "message_stop"})),
    ]


def test_anthropic_chunks_translate_to_openai_chunks() -> None:
    """Anthropic-dialect chunks are rebuilt as OpenAI chunks, tool indexes renumbered."""
    enc = OpenAIStreamEncoder(response_id="chatcmpl-z", model="claude", include_usage=True)
    data = _run(enc, _anthropic_upstream())
    assert b"event:" not in data  # nothing of the Anthropic wire leaks through
    state, chunks = _accumulate(data)
    message = state.get_final_completion().choices[0].message
    assert message.content == "Checking"
    call = message.tool_calls[0]  # type: ignore[index]
    assert (call.id, call.function.name) == ("toolu_9", "weather")  # type: ignore[union-attr]
    assert call.function.arguments == '{"city":"Oslo"}'  # type: ignore[union-attr]
    first_tool = next(c for c in chunks if c.choices and c.choices[0].delta.tool_calls)
    assert first_tool.choices[0].delta.tool_calls[0].index == 0  # type: ignore[index]
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (12, 30)


# --- streams: pass-through -------------------------------------------------------------


def _openai_upstream(*, done: bool = True) -> list[Chunk]:
    o = Dialect.OPENAI
    head = {"id": "chatcmpl-u", "object": "chat.completion.chunk", "created": 1, "model": "g"}
    choice = {"index": 0, "delta": {"content": "hi"}, "finish_reason": None}
    out = [
        Chunk(
            text="hi", role="assistant", dialect=o, raw=data_event({**head, "choices": [choice]})
        ),
        Chunk(finish_reason="stop", dialect=o, raw=data_event({**head, "choices": []})),
        Chunk(
            usage=Usage(3, 1),
            dialect=o,
            raw=data_event({**head, "choices": [], "usage": {"prompt_tokens": 3}}),
        ),
    ]
    if done:
        out.append(Chunk(dialect=o, raw=b"data: [DONE]\n\n"))
    return out


def test_openai_chunks_pass_through_byte_for_byte() -> None:
    """With include_usage, upstream OpenAI events are written unchanged and nothing added."""
    upstream = _openai_upstream()
    enc = OpenAIStreamEncoder(response_id="r", model="m", include_usage=True)
    out = [enc.encode(c) for c in upstream]
    assert out == [c.raw for c in upstream]
    assert enc.finish() == b""  # [DONE] and usage were already passed


def test_usage_only_chunk_is_dropped_when_not_asked() -> None:
    """Without include_usage, the upstream usage-only chunk is dropped; [DONE] stays once."""
    upstream = _openai_upstream()
    enc = OpenAIStreamEncoder(response_id="r", model="m", include_usage=False)
    data = _run(enc, upstream)
    assert b"prompt_tokens" not in data
    assert data.count(b"[DONE]") == 1 and data.endswith(b"data: [DONE]\n\n")


def test_done_is_added_when_upstream_never_sent_it() -> None:
    """A pass-through stream without [DONE] still ends with exactly one."""
    enc = OpenAIStreamEncoder(response_id="r", model="m", include_usage=True)
    data = _run(enc, _openai_upstream(done=False))
    assert data.count(b"[DONE]") == 1 and data.endswith(b"data: [DONE]\n\n")
    assert data.count(b"prompt_tokens") == 1  # the passed usage chunk is not repeated


# --- streams: errors -------------------------------------------------------------------


def test_error_event_is_a_data_error_then_done() -> None:
    """A mid-stream failure writes {"error": ...} then [DONE], and finish adds nothing."""
    enc = OpenAIStreamEncoder(response_id="r", model="m", include_usage=True)
    enc.encode(Chunk(text="partial"))
    events = sse_events(enc.error_event(BadRequest("boom")))
    assert events[-1] == (None, "[DONE]") and len(events) == 2
    assert orjson.loads(events[0][1])["error"]["message"] == "boom"
    assert enc.finish() == b""


def test_error_event_after_passed_done_adds_no_second_done() -> None:
    """If [DONE] already went through, the error event does not repeat it."""
    enc = OpenAIStreamEncoder(response_id="r", model="m", include_usage=False)
    for c in _openai_upstream():
        enc.encode(c)
    assert b"[DONE]" not in enc.error_event(BadRequest("late"))
