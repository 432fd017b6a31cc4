"""Translation between the neutral types and the Anthropic Messages wire format.

Pure functions plus one small per-stream state object; no I/O.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

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

DEFAULT_MAX_TOKENS = 4096
JSON_INSTRUCTION = "Respond with a single valid JSON object and nothing else."

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_DATA_URL = re.compile(r"^data:(?P<media>[^;,]+);base64,(?P<data>.*)$", re.DOTALL)

Block = dict[str, Any]


def build_body(req: ChatRequest, model: str, *, stream: bool) -> dict[str, Any]:
    """The Messages body for ``model``; the client's own body when it spoke Anthropic."""
    if req.dialect == Dialect.ANTHROPIC and req.raw is not None:
        body = dict(req.raw)  # fast path: shallow copy, no re-translation
        body["model"] = model
    else:
        body = _translate(req, model)
    if stream:
        body["stream"] = True
    else:
        body.pop("stream", None)
    return body


def _translate(req: ChatRequest, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": req.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": _messages(req.messages),
    }
    system = _system(req)
    if system:
        body["system"] = system
    optional: dict[str, Any] = {
        "temperature": req.temperature,
        "top_p": req.top_p,
        "stop_sequences": req.stop or None,
        "metadata": {"user_id": req.user} if req.user else None,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if req.tools:
        body["tools"] = [_tool(t) for t in req.tools]
    if req.tool_choice is not None:
        body["tool_choice"] = _tool_choice(req.tool_choice)
    return body  # seed has no Anthropic equivalent: dropped


def _system(req: ChatRequest) -> str:
    parts = [m.text() for m in req.messages if m.role == "system"]
    fmt = req.response_format or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        schema = (fmt.get("json_schema") or {}).get("schema")
        suffix = f" It must match this JSON schema: {orjson.dumps(schema).decode()}"
        parts.append(JSON_INSTRUCTION + (suffix if schema else ""))
    return "\n\n".join(p for p in parts if p)


def _messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Non-system messages; consecutive same-role turns (tool results) merged into one."""
    out: list[dict[str, Any]] = []
    for msg in messages:
        if msg.role == "system":
            continue
        role = "assistant" if msg.role == "assistant" else "user"
        content = _content(msg)
        if out and out[-1]["role"] == role:
            out[-1]["content"] = _listed(out[-1]["content"]) + _listed(content)
        else:
            out.append({"role": role, "content": content})
    return out


def _content(msg: Message) -> str | list[Block]:
    if msg.role == "tool":
        return [{"type": "tool_result", "tool_use_id": msg.tool_call_id, "content": msg.text()}]
    if isinstance(msg.content, str) and not msg.tool_calls:
        return msg.content
    blocks = _as_blocks(msg.content)
    for call in msg.tool_calls or []:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": _input(call)})
    return blocks


def _listed(content: str | list[Block]) -> list[Block]:
    """Anthropic content as a block list (a plain string becomes one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return content


def _as_blocks(content: str | list[Any] | None) -> list[Block]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return [_block(p) for p in content]


def _block(part: Block) -> Block:
    if part.get("type") != "image":
        return {"type": "text", "text": str(part.get("text", ""))}
    if "data" in part:
        source = {"type": "base64", "media_type": part.get("media_type"), "data": part["data"]}
        return {"type": "image", "source": source}
    url = str(part.get("url", ""))
    match = _DATA_URL.match(url)
    if match:
        source = {"type": "base64", "media_type": match["media"], "data": match["data"]}
        return {"type": "image", "source": source}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _input(call: ToolCall) -> Any:
    try:
        value = orjson.loads(call.arguments or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _tool(tool: ToolSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name, "input_schema": tool.parameters}
    if tool.description:
        out["description"] = tool.description
    return out


def _tool_choice(choice: ToolChoice) -> dict[str, Any]:
    if isinstance(choice, dict):
        return {"type": "tool", "name": choice["name"]}
    return {"type": {"required": "any"}.get(choice, choice)}


def parse_usage(usage: Any) -> Usage:
    """``Usage`` from an Anthropic usage object; cached input counts as prompt."""
    if not isinstance(usage, dict):
        return Usage()
    prompt = sum(
        int(usage.get(k) or 0)
        for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    return Usage(prompt_tokens=prompt, completion_tokens=int(usage.get("output_tokens") or 0))


def parse_response(body: dict[str, Any], raw: bytes, fallback_model: str) -> ChatResponse:
    """A ``ChatResponse`` from a Messages body: text blocks joined, tool_use as calls."""
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in body.get("content") or []:
        if block.get("type") == "text":
            texts.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            args = orjson.dumps(block.get("input") or {}).decode()
            calls.append(ToolCall(block.get("id", ""), block.get("name", ""), args))
    text = "".join(texts)
    return ChatResponse(
        id=body.get("id") or "",
        model=body.get("model") or fallback_model,
        content=text if text or not calls else None,
        tool_calls=calls,
        finish_reason=STOP_REASONS.get(body.get("stop_reason") or "end_turn", "stop"),
        usage=parse_usage(body.get("usage")),
        dialect=Dialect.ANTHROPIC,
        raw=raw,
    )


class StreamState:
    """Turns one stream's events into neutral chunks; remembers what later events need.

    Tool-call deltas are indexed by tool-call ordinal (0, 1, ...), as OpenAI does, not
    by Anthropic's content-block index, which also counts text blocks.
    """

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.stopped = False
        self._tool_index: dict[int, int] = {}

    def chunk(self, data: dict[str, Any], raw: bytes) -> Chunk:
        """The neutral chunk for one event payload (an ``error`` event is not handled)."""
        chunk = Chunk(dialect=Dialect.ANTHROPIC, raw=raw)
        kind = data.get("type")
        if kind == "message_start":
            message = data.get("message") or {}
            self.prompt_tokens = parse_usage(message.get("usage")).prompt_tokens
            chunk.role = message.get("role", "assistant")
        elif kind == "content_block_start":
            self._block_start(chunk, data)
        elif kind == "content_block_delta":
            self._block_delta(chunk, data)
        elif kind == "message_delta":
            self._message_delta(chunk, data)
        elif kind == "message_stop":
            self.stopped = True
        return chunk

    def _block_start(self, chunk: Chunk, data: dict[str, Any]) -> None:
        block = data.get("content_block") or {}
        if block.get("type") == "tool_use":
            ordinal = len(self._tool_index)
            self._tool_index[int(data.get("index") or 0)] = ordinal
            chunk.tool_calls = [ToolCallDelta(ordinal, id=block.get("id"), name=block.get("name"))]
        elif block.get("type") == "text" and block.get("text"):
            chunk.text = block["text"]

    def _block_delta(self, chunk: Chunk, data: dict[str, Any]) -> None:
        delta = data.get("delta") or {}
        if delta.get("type") == "text_delta":
            chunk.text = delta.get("text") or None
        elif delta.get("type") == "input_json_delta":
            ordinal = self._tool_index.get(int(data.get("index") or 0), 0)
            chunk.tool_calls = [ToolCallDelta(ordinal, arguments=delta.get("partial_json", ""))]

    def _message_delta(self, chunk: Chunk, data: dict[str, Any]) -> None:
        reason = (data.get("delta") or {}).get("stop_reason")
        if reason:
            chunk.finish_reason = STOP_REASONS.get(reason, "stop")
        usage = data.get("usage")
        if isinstance(usage, dict):
            counted = parse_usage(usage)
            # newer APIs repeat input counts here; otherwise keep message_start's
            prompt = counted.prompt_tokens or self.prompt_tokens
            chunk.usage = Usage(prompt_tokens=prompt, completion_tokens=counted.completion_tokens)
