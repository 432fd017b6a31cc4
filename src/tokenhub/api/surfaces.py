"""The client dialects the hot routes speak, each a bundle of codec functions.

A ``Surface`` knows how to parse a body into a ``ChatRequest`` (and the policy fields
its dialect carries), encode a whole answer, make a per-request stream encoder and
render an error. Nothing outside the codecs knows a client's wire format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tokenhub.api import anthropic_codec, native_codec, openai_codec
from tokenhub.errors import TokenHubError
from tokenhub.routing.config import MODES
from tokenhub.routing.shaping import OutputFormat
from tokenhub.types import ChatRequest, ChatResponse, Chunk, Decision


class StreamEncoder(Protocol):
    def encode(self, chunk: Chunk) -> bytes: ...
    def finish(self) -> bytes: ...
    def error_event(self, err: TokenHubError) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Parsed:
    chat: ChatRequest
    mode: str | None = None
    max_budget_usd: float | None = None
    max_latency_ms: int | None = None
    min_weight: int | None = None
    output_format: OutputFormat | None = None  # native /v1/chat only


@dataclass(frozen=True, slots=True)
class Surface:
    """One client dialect: how to parse a body and render results and errors."""

    name: str
    scope: str  # the API-key scope the route needs
    parse: Callable[[object, str], Parsed]
    encode: Callable[[ChatResponse, Decision], bytes]
    stream_encoder: Callable[[ChatRequest, Decision], StreamEncoder]
    render_error: Callable[[TokenHubError], bytes]


def _openai_surface() -> Surface:
    def stream_encoder(req: ChatRequest, d: Decision) -> StreamEncoder:
        return openai_codec.OpenAIStreamEncoder(
            response_id=f"chatcmpl-{req.request_id}",
            model=d.model.id if d.model else "",
            include_usage=req.stream_usage,
        )

    return Surface(
        name="openai",
        scope="chat",
        parse=lambda body, rid: Parsed(openai_codec.parse_chat_request(body, rid)),
        encode=lambda resp, _d: openai_codec.encode_response(resp),
        stream_encoder=stream_encoder,
        render_error=openai_codec.render_error,
    )


def _anthropic_surface() -> Surface:
    def stream_encoder(req: ChatRequest, d: Decision) -> StreamEncoder:
        return anthropic_codec.AnthropicStreamEncoder(
            response_id=f"msg_{req.request_id}",
            model=d.model.id if d.model else "",
            input_tokens=d.estimated_tokens,
        )

    return Surface(
        name="anthropic",
        scope="chat",
        parse=lambda body, rid: Parsed(anthropic_codec.parse_messages_request(body, rid)),
        encode=lambda resp, _d: anthropic_codec.encode_response(resp),
        stream_encoder=stream_encoder,
        render_error=anthropic_codec.render_error,
    )


def _native_parse(body: object, rid: str) -> Parsed:
    n = native_codec.parse_native_request(body, rid, MODES)
    return Parsed(n.chat, n.mode, n.max_budget_usd, n.max_latency_ms, n.min_weight, n.output_format)


def _native_encode(resp: ChatResponse, d: Decision) -> bytes:
    cost = d.model.cost(resp.usage) if d.model else 0.0
    return native_codec.encode_native_response(resp, d, cost)


def _native_surface() -> Surface:
    openai = _openai_surface()
    return Surface(
        name="native",
        scope="chat",
        parse=_native_parse,
        encode=_native_encode,
        stream_encoder=openai.stream_encoder,  # native streams speak OpenAI chunks
        render_error=openai_codec.render_error,
    )


SURFACES = {
    "/v1/chat/completions": _openai_surface(),
    "/v1/messages": _anthropic_surface(),
    "/v1/chat": _native_surface(),
}
