"""The Anthropic messages dialect: request parsing, response, stream and error encoding.

Anthropic and the neutral types differ in three places this module bridges:

- the system prompt is a top-level field, not a message: it becomes one leading
  ``system`` message;
- tool results are blocks inside a user turn: each becomes its own ``tool`` message
  (placed before the turn's remaining text and images, where OpenAI wants them);
- tool input is a JSON object, while neutral tool arguments are JSON text.

Streams from an Anthropic upstream are written through byte for byte; anything else is
rebuilt as a proper event stream (``message_start``, content blocks, ``message_delta``,
``message_stop``).
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from tokenhub.api.validate import (
    as_list,
    as_object,
    as_str,
    fail,
    json_text,
    one_of,
    opt_bool,
    opt_int,
    opt_number,
    opt_object,
    opt_str,
    opt_str_list,
)
from tokenhub.errors import TokenHubError
from tokenhub.types import (
    ChatRequest,
    ChatResponse,
    Chunk,
    Dialect,
    Message,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    Usage,
)

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
_SKIPPED_BLOCKS = ("thinking", "redacted_thinking")  # meaningless to other providers
_CONTENT_FORM = "must be a string or a non-empty list of content blocks"


# --- request -------------------------------------------------------------------------


def parse_messages_request(body: object, request_id: str) -> ChatRequest:
    """Parse an Anthropic messages body into a neutral request (raises BadRequest)."""
    obj = as_object(body, "body")
    if obj.get("max_tokens") is None:
        fail("max_tokens", "required")
    stream = opt_bool(obj, "stream") or False
    opt_int(obj, "top_k", lo=0)  # checked for the client's sake; no neutral field
    return ChatRequest(
        messages=_system(obj.get("system")) + _turns(obj.get("messages")),
        model=opt_str(obj, "model"),
        max_tokens=opt_int(obj, "max_tokens", lo=1),
        temperature=opt_number(obj, "temperature", lo=0, hi=1),
        top_p=opt_number(obj, "top_p", lo=0, hi=1),
        stop=opt_str_list(obj, "stop_sequences"),
        tools=_tools(obj.get("tools")),
        tool_choice=_tool_choice(obj.get("tool_choice")),
        user=_user_id(obj),
        stream=stream,
        # Anthropic streams always end with usage, so its clients always "ask" for it.
        stream_usage=stream,
        request_id=request_id,
        dialect=Dialect.ANTHROPIC,
        raw=obj,
    )


def _system(value: object) -> list[Message]:
    if value is None:
        return []
    if type(value) is str:
        return [Message("system", value)] if value else []
    if type(value) is not list:
        fail("system", "must be a string or a list of text blocks")
    parts = [_text_block(b, f"system[{i}]") for i, b in enumerate(value)]
    if not parts:
        return []
    return [Message("system", parts[0]["text"] if len(parts) == 1 else parts)]


def _text_block(value: object, path: str) -> dict[str, Any]:
    obj = as_object(value, path)
    one_of(obj.get("type"), ("text",), f"{path}.type")
    return {"type": "text", "text": as_str(obj.get("text"), f"{path}.text")}


def _turns(value: object) -> list[Message]:
    out: list[Message] = []
    for i, turn in enumerate(as_list(value, "messages", non_empty=True)):
        out += _turn(turn, f"messages[{i}]")
    return out


def _turn(value: object, path: str) -> list[Message]:
    obj = as_object(value, path)
    role: Any = obj.get("role")
    if role != "user" and role != "assistant":  # the path is built only on failure
        one_of(role, ("user", "assistant"), f"{path}.role")
    content = obj.get("content")
    if type(content) is str:
        return [Message(role, content)]
    if type(content) is not list or not content:
        fail(f"{path}.content", _CONTENT_FORM)
    if role == "assistant":
        return [_assistant(content, f"{path}.content")]
    return _user(content, f"{path}.content")


def _assistant(blocks: list[Any], path: str) -> Message:
    texts: list[str] = []
    calls: list[ToolCall] = []
    for j, block in enumerate(blocks):
        bpath = f"{path}[{j}]"
        obj = as_object(block, bpath)
        kind = obj.get("type")
        if kind == "text":
            texts.append(as_str(obj.get("text"), f"{bpath}.text"))
        elif kind == "tool_use":
            calls.append(_tool_use(obj, bpath))
        elif kind not in _SKIPPED_BLOCKS:
            fail(f"{bpath}.type", "must be one of text, tool_use")
    return Message("assistant", "".join(texts) if texts else None, tool_calls=calls or None)


def _tool_use(obj: dict[str, Any], path: str) -> ToolCall:
    return ToolCall(
        id=as_str(obj.get("id"), f"{path}.id", non_empty=True),
        name=as_str(obj.get("name"), f"{path}.name", non_empty=True),
        arguments=json_text(as_object(obj.get("input"), f"{path}.input"), f"{path}.input"),
    )


def _user(blocks: list[Any], path: str) -> list[Message]:
    results: list[Message] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        bpath = f"{path}[{j}]"
        obj = as_object(block, bpath)
        kind = obj.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": as_str(obj.get("text"), f"{bpath}.text")})
        elif kind == "image":
            parts.append(_image(obj.get("source"), f"{bpath}.source"))
        elif kind == "tool_result":
            results.append(_tool_result(obj, bpath))
        else:
            fail(f"{bpath}.type", "must be one of text, image, tool_result")
    return [*results, Message("user", parts)] if parts else results


def _image(value: object, path: str) -> dict[str, Any]:
    src = as_object(value, path)
    if one_of(src.get("type"), ("base64", "url"), f"{path}.type") == "url":
        return {"type": "image", "url": as_str(src.get("url"), f"{path}.url", non_empty=True)}
    return {
        "type": "image",
        "media_type": as_str(src.get("media_type"), f"{path}.media_type", non_empty=True),
        "data": as_str(src.get("data"), f"{path}.data", non_empty=True),
    }


def _tool_result(obj: dict[str, Any], path: str) -> Message:
    call_id = as_str(obj.get("tool_use_id"), f"{path}.tool_use_id", non_empty=True)
    opt_bool(obj, "is_error", path)
    content = obj.get("content")
    if content is None or type(content) is str:
        text = content or ""
    elif type(content) is list:
        text = "".join(_result_text(b, f"{path}.content[{k}]") for k, b in enumerate(content))
    else:
        fail(f"{path}.content", "must be a string or a list of content blocks")
    return Message("tool", text, tool_call_id=call_id)


def _result_text(value: object, path: str) -> str:
    # Neutral tool messages carry text only, so images inside a result are dropped.
    obj = as_object(value, path)
    kind = one_of(obj.get("type"), ("text", "image"), f"{path}.type")
    return as_str(obj.get("text"), f"{path}.text") if kind == "text" else ""


def _tools(value: object) -> list[ToolSpec] | None:
    if value is None:
        return None
    specs = [_tool(t, f"tools[{i}]") for i, t in enumerate(as_list(value, "tools"))]
    return specs or None


def _tool(value: object, path: str) -> ToolSpec:
    obj = as_object(value, path)
    kind = obj.get("type")
    if kind is not None and kind != "custom":
        fail(f"{path}.type", "must be custom (server tools are not supported)")
    return ToolSpec(
        name=as_str(obj.get("name"), f"{path}.name", non_empty=True),
        description=opt_str(obj, "description", path),
        parameters=as_object(obj.get("input_schema"), f"{path}.input_schema"),
    )


def _tool_choice(value: object) -> ToolChoice | None:
    if value is None:
        return None
    obj = as_object(value, "tool_choice")
    kind = one_of(obj.get("type"), ("auto", "any", "none", "tool"), "tool_choice.type")
    opt_bool(obj, "disable_parallel_tool_use", "tool_choice")
    if kind == "tool":
        return {"name": as_str(obj.get("name"), "tool_choice.name", non_empty=True)}
    return "required" if kind == "any" else kind


def _user_id(obj: dict[str, Any]) -> str | None:
    metadata = opt_object(obj, "metadata")
    return None if metadata is None else opt_str(metadata, "user_id", "metadata")


# --- whole responses and errors --------------------------------------------------------


def encode_response(resp: ChatResponse) -> bytes:
    """An Anthropic ``message`` body; the upstream bytes themselves when it spoke Anthropic."""
    if resp.dialect is Dialect.ANTHROPIC and resp.raw is not None:
        return resp.raw
    content: list[dict[str, Any]] = []
    if resp.content:
        content.append({"type": "text", "text": resp.content})
    for tc in resp.tool_calls:
        content.append({"type": "tool_use", "id": tc.id, "name": tc.name, "input": _input(tc)})
    return orjson.dumps(
        {
            "id": resp.id if resp.id.startswith("msg_") else f"msg_{resp.id}",
            "type": "message",
            "role": "assistant",
            "model": resp.model,
            "content": content,
            "stop_reason": stop_reason(resp.finish_reason),
            "stop_sequence": None,
            "usage": {
                "input_tokens": resp.usage.prompt_tokens,
                "output_tokens": resp.usage.completion_tokens,
            },
        }
    )


def _input(tc: ToolCall) -> dict[str, Any]:
    # Models sometimes emit broken argument JSON; Anthropic's shape demands an object.
    try:
        value = orjson.loads(tc.arguments)
    except orjson.JSONDecodeError:
        return {}
    return value if type(value) is dict else {}


def stop_reason(finish_reason: str) -> str:
    """A neutral finish reason as Anthropic spells it."""
    return STOP_REASONS.get(finish_reason, "end_turn")


def error_body(err: TokenHubError) -> dict[str, Any]:
    """The object under ``"error"`` in Anthropic's error shape."""
    body: dict[str, Any] = {"type": err.anthropic_type, "message": err.message}
    if err.details:
        body["details"] = err.details
    return body


def render_error(err: TokenHubError) -> bytes:
    """An Anthropic error response body."""
    return _dumps_lenient({"type": "error", "error": error_body(err)})


def _dumps_lenient(obj: object) -> bytes:
    # Error details come from many layers; rendering one must never fail with a 500.
    return orjson.dumps(obj, default=str, option=orjson.OPT_NON_STR_KEYS)


def _event(name: bytes, data: dict[str, Any]) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(data) + b"\n\n"


# --- streams ---------------------------------------------------------------------------


class AnthropicStreamEncoder:
    """Turns one stream of neutral chunks into Anthropic message stream events.

    Chunks an Anthropic upstream sent are written through byte for byte. Otherwise text
    and each tool call become content blocks with increasing indexes. A finish reason
    closes the open block, but ``message_delta``/``message_stop`` wait for usage (OpenAI
    sends it in a later chunk) or for ``finish()``.

    Tool call fragments are expected one call after another, as providers send them; a
    fragment for an earlier, already closed call still goes to that call's block index.
    """

    __slots__ = (
        "_finished",
        "_input_known",
        "_input_tokens",
        "_model",
        "_next_index",
        "_open",
        "_open_is_text",
        "_output_tokens",
        "_passthrough",
        "_response_id",
        "_started",
        "_stop_reason",
        "_tool_blocks",
    )

    def __init__(self, *, response_id: str, model: str, input_tokens: int) -> None:
        self._response_id = response_id
        self._model = model
        self._input_tokens = input_tokens
        self._input_known = False
        self._output_tokens = 0
        self._started = False
        self._passthrough = False
        self._finished = False
        self._next_index = 0
        self._open: int | None = None  # index of the open content block
        self._open_is_text = False
        self._tool_blocks: dict[int, int] = {}  # neutral tool index -> block index
        self._stop_reason: str | None = None

    def encode(self, chunk: Chunk) -> bytes:
        """The SSE bytes to write for ``chunk`` (possibly ``b""``)."""
        if chunk.raw is not None and chunk.dialect is Dialect.ANTHROPIC:
            self._passthrough = True
            return chunk.raw
        if self._finished:
            return b""
        if chunk.usage is not None:
            self._remember(chunk.usage)
        out: list[bytes] = []
        if not self._started:
            out.append(self._message_start())
        if chunk.text:
            self._text(chunk.text, out)
        for td in chunk.tool_calls or ():
            self._tool(td, out)
        if chunk.finish_reason is not None:
            self._close(out)
            self._stop_reason = stop_reason(chunk.finish_reason)
        if chunk.usage is not None and self._stop_reason is not None:
            self._end(out)
        return b"".join(out)

    def finish(self) -> bytes:
        """Whatever the stream still owes: closing events up to ``message_stop``."""
        if self._finished or self._passthrough:
            self._finished = True
            return b""
        out: list[bytes] = []
        if not self._started:
            out.append(self._message_start())
        self._end(out)
        return b"".join(out)

    def error_event(self, err: TokenHubError) -> bytes:
        """An ``event: error`` that ends the stream."""
        self._finished = True
        return _event(b"error", {"type": "error", "error": error_body(err)})

    def _remember(self, usage: Usage) -> None:
        self._output_tokens = usage.completion_tokens
        if usage.prompt_tokens:
            self._input_tokens = usage.prompt_tokens
            self._input_known = True

    def _message_start(self) -> bytes:
        self._started = True
        message: dict[str, Any] = {
            "id": self._response_id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._input_tokens, "output_tokens": 0},
        }
        return _event(b"message_start", {"type": "message_start", "message": message})

    def _text(self, text: str, out: list[bytes]) -> None:
        if self._open is None or not self._open_is_text:
            self._open_block({"type": "text", "text": ""}, out)
            self._open_is_text = True
        delta = {"type": "text_delta", "text": text}
        out.append(_event(b"content_block_delta", _delta(self._open, delta)))

    def _tool(self, td: ToolCallDelta, out: list[bytes]) -> None:
        index = self._tool_blocks.get(td.index)
        if index is None:
            block = {
                "type": "tool_use",
                "id": td.id or f"toolu_{secrets.token_hex(12)}",
                "name": td.name or "",
                "input": {},
            }
            index = self._tool_blocks[td.index] = self._open_block(block, out)
        if td.arguments:
            delta = {"type": "input_json_delta", "partial_json": td.arguments}
            out.append(_event(b"content_block_delta", _delta(index, delta)))

    def _open_block(self, block: dict[str, Any], out: list[bytes]) -> int:
        self._close(out)
        index = self._open = self._next_index
        self._next_index += 1
        self._open_is_text = False
        start = {"type": "content_block_start", "index": index, "content_block": block}
        out.append(_event(b"content_block_start", start))
        return index

    def _close(self, out: list[bytes]) -> None:
        if self._open is not None:
            stop = {"type": "content_block_stop", "index": self._open}
            out.append(_event(b"content_block_stop", stop))
            self._open = None

    def _end(self, out: list[bytes]) -> None:
        self._close(out)
        self._finished = True
        usage: dict[str, int] = {"output_tokens": self._output_tokens}
        if self._input_known:
            usage["input_tokens"] = self._input_tokens
        delta = {"stop_reason": self._stop_reason or "end_turn", "stop_sequence": None}
        out.append(
            _event(b"message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        )
        out.append(_event(b"message_stop", {"type": "message_stop"}))


def _delta(index: int | None, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}
