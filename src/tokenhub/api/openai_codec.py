"""The OpenAI chat-completions dialect: request parsing, response, stream and error encoding.

``parse_chat_request`` turns a body already decoded by ``orjson.loads`` into a neutral
``ChatRequest`` with hand-written checks of the fields TokenHub uses; unknown fields
are left alone (they still travel in ``raw`` for the pass-through fast path).
``encode_response`` and ``OpenAIStreamEncoder`` go the other way; when the upstream
already spoke OpenAI they hand its bytes through untouched.

The message and parameter parsers (``parse_messages``, ``apply_parameters``) are public
because the native ``/v1/chat`` envelope reuses them under its own field paths.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from tokenhub.api.validate import (
    as_list,
    as_object,
    as_str,
    fail,
    join,
    one_of,
    opt_bool,
    opt_int,
    opt_number,
    opt_object,
    opt_stop,
    opt_str,
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

ROLES = ("system", "developer", "user", "assistant", "tool")
_ROLE_SET = frozenset(ROLES)
FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
DONE = b"data: [DONE]\n\n"

_TOOL_CHOICE_FORM = 'must be auto, none, required or {"type": "function", "function": {"name"}}'
_IMAGE_URL_FORM = "must be an http(s) URL or a base64 data: URL"


# --- request -------------------------------------------------------------------------


def parse_chat_request(body: object, request_id: str) -> ChatRequest:
    """Parse an OpenAI chat-completions body into a neutral request (raises BadRequest)."""
    obj = as_object(body, "body")
    req = ChatRequest(
        messages=parse_messages(obj.get("messages"), "messages"),
        model=opt_str(obj, "model"),
        request_id=request_id,
        dialect=Dialect.OPENAI,
        raw=obj,
    )
    apply_parameters(req, obj, "")
    n = opt_int(obj, "n", lo=1)
    if n is not None and n != 1:
        fail("n", "only 1 is supported")
    req.stream = opt_bool(obj, "stream") or False
    options = opt_object(obj, "stream_options")
    if options is not None:
        req.stream_usage = req.stream and bool(opt_bool(options, "include_usage", "stream_options"))
    return req


def apply_parameters(req: ChatRequest, obj: dict[str, Any], prefix: str) -> None:
    """Read the sampling, tool and format fields of ``obj`` (at path ``prefix``) into ``req``."""
    limit = opt_int(obj, "max_completion_tokens", prefix, lo=1)
    req.max_tokens = limit if limit is not None else opt_int(obj, "max_tokens", prefix, lo=1)
    req.temperature = opt_number(obj, "temperature", prefix, lo=0, hi=2)
    req.top_p = opt_number(obj, "top_p", prefix, lo=0, hi=1)
    req.stop = opt_stop(obj, "stop", prefix)
    req.tools = parse_tools(obj.get("tools"), join(prefix, "tools"))
    req.tool_choice = parse_tool_choice(obj.get("tool_choice"), join(prefix, "tool_choice"))
    req.response_format = _response_format(obj, prefix)
    req.seed = opt_int(obj, "seed", prefix)
    req.user = opt_str(obj, "user", prefix)


def parse_messages(value: object, path: str) -> list[Message]:
    """A non-empty list of OpenAI messages; ``developer`` becomes ``system``."""
    items = as_list(value, path, non_empty=True)
    return [_message(m, f"{path}[{i}]") for i, m in enumerate(items)]


def _message(value: object, path: str) -> Message:
    obj = as_object(value, path)
    role: Any = obj.get("role")
    # Field paths are built only on failure: this runs for every message of every request.
    if type(role) is not str or role not in _ROLE_SET:
        one_of(role, ROLES, f"{path}.role")
    if role == "developer":
        role = "system"
    content = obj.get("content")
    if type(content) is not str:
        content = _content(content, f"{path}.content", role)
    msg = Message(role, content)
    if "name" in obj:
        msg.name = opt_str(obj, "name", path)
    if role == "assistant":
        msg.tool_calls = _tool_calls(obj.get("tool_calls"), f"{path}.tool_calls")
    elif role == "tool":
        msg.tool_call_id = as_str(obj.get("tool_call_id"), f"{path}.tool_call_id", non_empty=True)
    return msg


def _content(value: object, path: str, role: str) -> list[dict[str, Any]] | None:
    if value is None and role == "assistant":
        return None  # an assistant turn may be tool calls only
    if type(value) is not list or not value:
        fail(path, "must be a string or a non-empty list of content parts")
    images = role == "user"
    return [_part(p, f"{path}[{j}]", images) for j, p in enumerate(value)]


def _part(value: object, path: str, images: bool) -> dict[str, Any]:
    obj = as_object(value, path)
    kind = obj.get("type")
    if kind == "text":
        return {"type": "text", "text": as_str(obj.get("text"), f"{path}.text")}
    if kind == "image_url" and images:
        return _image(obj.get("image_url"), f"{path}.image_url")
    fail(f"{path}.type", "must be one of text, image_url" if images else "must be text")


def _image(value: object, path: str) -> dict[str, Any]:
    url = as_str(as_object(value, path).get("url"), f"{path}.url", non_empty=True)
    if url.startswith(("https://", "http://")):
        return {"type": "image", "url": url}
    if not url.startswith("data:"):
        fail(f"{path}.url", _IMAGE_URL_FORM)
    header, comma, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not comma or encoding != "base64" or not media_type or not data:
        fail(f"{path}.url", _IMAGE_URL_FORM)
    return {"type": "image", "media_type": media_type, "data": data}


def _tool_calls(value: object, path: str) -> list[ToolCall] | None:
    if value is None:
        return None
    calls = [_tool_call(c, f"{path}[{i}]") for i, c in enumerate(as_list(value, path))]
    return calls or None


def _tool_call(value: object, path: str) -> ToolCall:
    obj = as_object(value, path)
    kind = obj.get("type")
    if kind is not None:
        one_of(kind, ("function",), f"{path}.type")
    fn = as_object(obj.get("function"), f"{path}.function")
    return ToolCall(
        id=as_str(obj.get("id"), f"{path}.id", non_empty=True),
        name=as_str(fn.get("name"), f"{path}.function.name", non_empty=True),
        arguments=as_str(fn.get("arguments"), f"{path}.function.arguments"),
    )


def parse_tools(value: object, path: str) -> list[ToolSpec] | None:
    """OpenAI ``tools``: a list of ``{"type": "function", "function": {...}}``."""
    if value is None:
        return None
    specs = [_tool_spec(t, f"{path}[{i}]") for i, t in enumerate(as_list(value, path))]
    return specs or None


def _tool_spec(value: object, path: str) -> ToolSpec:
    obj = as_object(value, path)
    one_of(obj.get("type"), ("function",), f"{path}.type")
    fn = as_object(obj.get("function"), f"{path}.function")
    fpath = f"{path}.function"
    spec = ToolSpec(as_str(fn.get("name"), f"{fpath}.name", non_empty=True))
    spec.description = opt_str(fn, "description", fpath)
    parameters = opt_object(fn, "parameters", fpath)
    if parameters is not None:
        spec.parameters = parameters
    return spec


def parse_tool_choice(value: object, path: str) -> ToolChoice | None:
    """``auto``/``none``/``required`` or a named function, as ``{"name": ...}``."""
    if value is None:
        return None
    if type(value) is str:
        if value in ("auto", "none", "required"):
            return value
        fail(path, _TOOL_CHOICE_FORM)
    if type(value) is not dict or value.get("type") != "function":
        fail(path, _TOOL_CHOICE_FORM)
    fn = as_object(value.get("function"), f"{path}.function")
    return {"name": as_str(fn.get("name"), f"{path}.function.name", non_empty=True)}


def _response_format(obj: dict[str, Any], prefix: str) -> dict[str, Any] | None:
    fmt = opt_object(obj, "response_format", prefix)
    if fmt is None:
        return None
    path = join(prefix, "response_format")
    if one_of(fmt.get("type"), RESPONSE_FORMATS, f"{path}.type") == "json_schema":
        schema = as_object(fmt.get("json_schema"), f"{path}.json_schema")
        as_str(schema.get("name"), f"{path}.json_schema.name", non_empty=True)
    return fmt


# --- whole responses and errors --------------------------------------------------------


def encode_response(resp: ChatResponse) -> bytes:
    """A ``chat.completion`` body; the upstream bytes themselves when it spoke OpenAI."""
    if resp.dialect is Dialect.OPENAI and resp.raw is not None:
        return resp.raw
    message: dict[str, Any] = {"role": "assistant", "content": resp.content}
    if resp.tool_calls:
        message["tool_calls"] = [_tool_call_json(tc) for tc in resp.tool_calls]
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": finish_reason(resp.finish_reason),
    }
    return orjson.dumps(
        {
            "id": resp.id if resp.id.startswith("chatcmpl-") else f"chatcmpl-{resp.id}",
            "object": "chat.completion",
            "created": resp.created or int(time.time()),
            "model": resp.model,
            "choices": [choice],
            "usage": usage_json(resp.usage),
        }
    )


def _tool_call_json(tc: ToolCall) -> dict[str, Any]:
    return {
        "id": tc.id,
        "type": "function",
        "function": {"name": tc.name, "arguments": tc.arguments},
    }


def finish_reason(reason: str) -> str:
    """A neutral finish reason as OpenAI spells it (unknown ones become ``stop``)."""
    return reason if reason in FINISH_REASONS else "stop"


def usage_json(usage: Usage) -> dict[str, int]:
    """OpenAI's usage object."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def error_body(err: TokenHubError) -> dict[str, Any]:
    """The object under ``"error"`` in OpenAI's error shape."""
    body: dict[str, Any] = {
        "message": err.message,
        "type": err.openai_type,
        "param": None,
        "code": err.code,
    }
    if err.details:
        body["details"] = err.details
    return body


def render_error(err: TokenHubError) -> bytes:
    """An OpenAI error response body."""
    return _dumps_lenient({"error": error_body(err)})


def _dumps_lenient(obj: object) -> bytes:
    # Error details come from many layers; rendering one must never fail with a 500.
    return orjson.dumps(obj, default=str, option=orjson.OPT_NON_STR_KEYS)


# --- streams ---------------------------------------------------------------------------


class OpenAIStreamEncoder:
    """Turns one stream of neutral chunks into OpenAI ``chat.completion.chunk`` SSE bytes.

    Chunks an OpenAI upstream sent are written through byte for byte, except the
    usage-only chunk when the client did not ask for usage (the adapter always asks
    upstream for it). Other chunks are translated; their usage is sent as one usage
    chunk at ``finish()``, just before ``[DONE]``, which is where OpenAI puts it.
    """

    __slots__ = (
        "_done",
        "_finished",
        "_prefix",
        "_started",
        "_tool_index",
        "_usage",
        "_usage_sent",
        "include_usage",
    )

    def __init__(self, *, response_id: str, model: str, include_usage: bool) -> None:
        self.include_usage = include_usage
        head = {
            "id": response_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        # Every chunk shares this head; encode it once and splice the choices after it.
        self._prefix = b"data: " + orjson.dumps(head)[:-1] + b',"choices":'
        self._started = False
        self._done = False
        self._finished = False
        self._usage: Usage | None = None
        self._usage_sent = False
        self._tool_index: dict[int, int] = {}

    def encode(self, chunk: Chunk) -> bytes:
        """The SSE bytes to write for ``chunk`` (possibly ``b""``)."""
        if chunk.usage is not None:
            self._remember_usage(chunk.usage)
        if chunk.raw is not None and chunk.dialect is Dialect.OPENAI:
            return self._pass_through(chunk, chunk.raw)
        return self._translate(chunk)

    def finish(self) -> bytes:
        """What is still owed at the end: the usage chunk and ``[DONE]``."""
        if self._finished:
            return b""
        self._finished = True
        out = b""
        if self.include_usage and not self._usage_sent and self._usage is not None:
            out = self._prefix + b'[],"usage":' + orjson.dumps(usage_json(self._usage)) + b"}\n\n"
        return out if self._done else out + DONE

    def error_event(self, err: TokenHubError) -> bytes:
        """A last ``data: {"error": ...}`` event, then ``[DONE]``."""
        self._finished = True
        out = b"data: " + _dumps_lenient({"error": error_body(err)}) + b"\n\n"
        if not self._done:
            self._done = True
            out += DONE
        return out

    def _remember_usage(self, usage: Usage) -> None:
        # Anthropic reports input tokens at the start and output tokens at the end.
        if self._usage is not None and not usage.prompt_tokens:
            usage = Usage(self._usage.prompt_tokens, usage.completion_tokens)
        self._usage = usage

    def _pass_through(self, chunk: Chunk, raw: bytes) -> bytes:
        if _carries_nothing(chunk):
            if chunk.usage is not None:
                if not self.include_usage:
                    return b""
                self._usage_sent = True
            elif b"[DONE]" in raw:
                self._done = True
        self._started = True
        return raw

    def _translate(self, chunk: Chunk) -> bytes:
        delta: dict[str, Any] = {} if self._started else {"role": "assistant"}
        if chunk.text is not None:
            delta["content"] = chunk.text
        if chunk.tool_calls:
            delta["tool_calls"] = [self._tool_delta(td) for td in chunk.tool_calls]
        reason = None if chunk.finish_reason is None else finish_reason(chunk.finish_reason)
        if reason is None and len(delta) == (0 if self._started else 1) and chunk.role is None:
            return b""  # a ping, or usage kept for finish()
        self._started = True
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
        return self._prefix + orjson.dumps([choice]) + b"}\n\n"

    def _tool_delta(self, td: ToolCallDelta) -> dict[str, Any]:
        # Upstream indexes may be content-block positions (Anthropic); OpenAI clients
        # expect tool calls numbered 0, 1, ... in order of appearance.
        index = self._tool_index.setdefault(td.index, len(self._tool_index))
        out: dict[str, Any] = {"index": index}
        if td.id is not None:
            out["id"] = td.id
            out["type"] = "function"
        fn: dict[str, str] = {"arguments": td.arguments}
        if td.name is not None:
            fn["name"] = td.name
        out["function"] = fn
        return out


def _carries_nothing(chunk: Chunk) -> bool:
    """True when a chunk has no choice content (usage-only, ``[DONE]`` or a ping)."""
    return (
        chunk.text is None
        and chunk.tool_calls is None
        and chunk.finish_reason is None
        and chunk.role is None
    )
