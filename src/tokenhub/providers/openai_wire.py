"""Translation between the neutral types and the OpenAI chat-completions wire format.

Pure functions, no I/O: request body building, response parsing and stream chunk
parsing, shared by every OpenAI-compatible adapter.
"""

from __future__ import annotations

from typing import Any

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

DONE = "[DONE]"


def build_body(req: ChatRequest, model: str, *, stream: bool) -> dict[str, Any]:
    """The request body for ``model``; the client's own body when it spoke OpenAI."""
    if req.dialect == Dialect.OPENAI and req.raw is not None:
        body = dict(req.raw)  # fast path: shallow copy, no re-translation
        body["model"] = model
    else:
        body = _translate(req, model)
    if stream:
        body["stream"] = True
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    else:
        body.pop("stream", None)
        body.pop("stream_options", None)
    return body


def _translate(req: ChatRequest, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [_message(m) for m in req.messages]}
    optional: dict[str, Any] = {
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "stop": req.stop or None,
        "response_format": req.response_format,
        "seed": req.seed,
        "user": req.user,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if req.tools:
        body["tools"] = [_tool(t) for t in req.tools]
    if req.tool_choice is not None:
        body["tool_choice"] = _tool_choice(req.tool_choice)
    return body


def _message(msg: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": msg.role, "content": _content(msg.content)}
    if msg.tool_calls:
        out["tool_calls"] = [
            {
                "id": tc.id,
                "type": "function",
                "function": {"name": tc.name, "arguments": tc.arguments},
            }
            for tc in msg.tool_calls
        ]
    if msg.tool_call_id is not None:
        out["tool_call_id"] = msg.tool_call_id
    if msg.name is not None:
        out["name"] = msg.name
    return out


def _content(content: str | list[dict[str, Any]] | None) -> str | list[dict[str, Any]] | None:
    if content is None or isinstance(content, str):
        return content
    return [_part(p) for p in content]


def _part(part: dict[str, Any]) -> dict[str, Any]:
    if part.get("type") != "image":
        return {"type": "text", "text": part.get("text", "")}
    url = part.get("url") or f"data:{part.get('media_type')};base64,{part.get('data')}"
    return {"type": "image_url", "image_url": {"url": url}}


def _tool(tool: ToolSpec) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
    if tool.description:
        fn["description"] = tool.description
    return {"type": "function", "function": fn}


def _tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    if isinstance(choice, str):
        return choice
    return {"type": "function", "function": {"name": choice["name"]}}


def parse_response(body: dict[str, Any], raw: bytes, fallback_model: str) -> ChatResponse:
    """A ``ChatResponse`` from a chat-completions body (first choice)."""
    choices = body.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    calls = [
        ToolCall(
            id=tc.get("id") or "",
            name=(tc.get("function") or {}).get("name") or "",
            arguments=(tc.get("function") or {}).get("arguments") or "",
        )
        for tc in message.get("tool_calls") or []
    ]
    return ChatResponse(
        id=body.get("id") or "",
        model=body.get("model") or fallback_model,
        content=message.get("content"),
        tool_calls=calls,
        finish_reason=choice.get("finish_reason") or ("tool_calls" if calls else "stop"),
        usage=parse_usage(body.get("usage")) or Usage(),
        created=int(body.get("created") or 0),
        dialect=Dialect.OPENAI,
        raw=raw,
    )


def parse_usage(usage: Any) -> Usage | None:
    """``Usage`` from an OpenAI ``usage`` object, None when absent."""
    if not isinstance(usage, dict):
        return None
    return Usage(
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
    )


def parse_chunk(data: dict[str, Any], raw: bytes) -> Chunk:
    """The neutral view of one ``chat.completion.chunk`` event."""
    chunk = Chunk(dialect=Dialect.OPENAI, raw=raw, usage=parse_usage(data.get("usage")))
    choices = data.get("choices") or []
    if not choices:
        return chunk
    choice = choices[0]
    delta = choice.get("delta") or {}
    chunk.role = delta.get("role")
    chunk.text = delta.get("content") or None
    chunk.finish_reason = choice.get("finish_reason")
    if delta.get("tool_calls"):
        chunk.tool_calls = [_tool_delta(tc) for tc in delta["tool_calls"]]
    return chunk


def _tool_delta(tc: dict[str, Any]) -> ToolCallDelta:
    fn = tc.get("function") or {}
    return ToolCallDelta(
        index=int(tc.get("index") or 0),
        id=tc.get("id"),
        name=fn.get("name"),
        arguments=fn.get("arguments") or "",
    )
