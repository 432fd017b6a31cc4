"""The hot surfaces as raw ASGI handlers.

FastAPI routing costs ~0.28 ms of CPU per request on this machine, more than the rest
of the gateway's work, so the traffic-carrying routes are matched here by exact path
and method and served without a framework: read the body once, parse it with orjson,
let the surface's codec build a ``ChatRequest``, route, and answer in the surface's
dialect. Everything else goes to the FastAPI app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from tokenhub.api import anthropic_codec, native_codec, openai_codec
from tokenhub.errors import BadRequest, PayloadTooLarge, TokenHubError, UpstreamFailed
from tokenhub.routing.config import MODES
from tokenhub.routing.engine import RoutingEngine
from tokenhub.types import ChatRequest, ChatResponse, Chunk, Decision, Policy

log = logging.getLogger("tokenhub.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_CT = (b"content-type", b"application/json")
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


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


@dataclass(frozen=True, slots=True)
class Surface:
    """One client dialect: how to parse a body and render results and errors."""

    name: str
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
        parse=lambda body, rid: Parsed(anthropic_codec.parse_messages_request(body, rid)),
        encode=lambda resp, _d: anthropic_codec.encode_response(resp),
        stream_encoder=stream_encoder,
        render_error=anthropic_codec.render_error,
    )


def _native_parse(body: object, rid: str) -> Parsed:
    n = native_codec.parse_native_request(body, rid, MODES)
    return Parsed(n.chat, n.mode, n.max_budget_usd, n.max_latency_ms, n.min_weight)


def _native_encode(resp: ChatResponse, d: Decision) -> bytes:
    cost = d.model.cost(resp.usage) if d.model else 0.0
    return native_codec.encode_native_response(resp, d, cost)


def _native_surface() -> Surface:
    openai = _openai_surface()
    return Surface(
        name="native",
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


def request_id_of(scope: Scope) -> str:
    """The client's X-Request-ID when it is sane, else a fresh one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if 0 < len(value) <= 128 and value.isascii():
                return str(value.decode())
            break
    return secrets.token_hex(12)


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing more than ``limit`` bytes with a 413."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
    parts: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise asyncio.CancelledError
        body = msg.get("body", b"")
        if body:
            size += len(body)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds {limit} bytes")
            parts.append(body)
        if not msg.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


def _routing_headers(rid: str, d: Decision | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"x-request-id", rid.encode())]
    if d is not None and d.model is not None:
        headers += [
            (b"x-tokenhub-model", d.model.id.encode()),
            (b"x-tokenhub-provider", d.provider_id.encode()),
            (b"x-tokenhub-reason", d.reason.encode()),
        ]
    return headers


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class ChatHandler:
    """Serves one surface: parse, route, answer (whole or streamed)."""

    def __init__(self, surface: Surface, engine: Callable[[], RoutingEngine], max_body: int):
        self.surface = surface
        self._engine = engine
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = request_id_of(scope)
        try:
            body = await read_body(scope, receive, self.max_body)
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise BadRequest("body: malformed JSON") from None
            parsed = self.surface.parse(data, rid)
            engine = self._engine()
            policy = engine.policy(
                mode=parsed.mode,
                max_budget_usd=parsed.max_budget_usd,
                max_latency_ms=parsed.max_latency_ms,
                min_weight=parsed.min_weight,
            )
            if parsed.chat.stream:
                await self._stream(engine, parsed.chat, policy, rid, receive, send)
                return
            resp, decision = await engine.complete(parsed.chat, policy)
            out = self.surface.encode(resp, decision)
        except TokenHubError as err:
            await self._error(send, err, rid)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unhandled error on %s (request %s)", self.surface.name, rid)
            await self._error(send, UpstreamFailed("internal error"), rid, status=500)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [JSON_CT, *_routing_headers(rid, decision)],
            }
        )
        await send({"type": "http.response.body", "body": out})

    async def _error(self, send: Send, err: TokenHubError, rid: str, status: int = 0) -> None:
        headers = [JSON_CT, (b"x-request-id", rid.encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
        await send(
            {"type": "http.response.start", "status": status or err.status, "headers": headers}
        )
        await send({"type": "http.response.body", "body": self.surface.render_error(err)})

    async def _stream(
        self,
        engine: RoutingEngine,
        req: ChatRequest,
        policy: Policy,
        rid: str,
        receive: Receive,
        send: Send,
    ) -> None:
        chunks, decision = await engine.open_stream(req, policy)
        enc = self.surface.stream_encoder(req, decision)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*SSE_HEADERS, *_routing_headers(rid, decision)],
                }
            )
            pump = asyncio.ensure_future(self._pump(chunks, enc, send, rid))
            watcher = asyncio.ensure_future(_wait_disconnect(receive))
            try:
                await asyncio.wait((pump, watcher), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (pump, watcher):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        finally:
            await _aclose(chunks)

    async def _pump(
        self, chunks: AsyncIterator[Chunk], enc: StreamEncoder, send: Send, rid: str
    ) -> None:
        try:
            async for chunk in chunks:
                data = enc.encode(chunk)
                if data:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
            tail = enc.finish()
        except TokenHubError as err:
            tail = enc.error_event(err)
        except Exception as exc:  # an upstream failure after the first byte
            log.warning("stream %s ended by upstream failure: %s", rid, type(exc).__name__)
            tail = enc.error_event(UpstreamFailed("upstream failed mid-stream"))
        await send({"type": "http.response.body", "body": tail, "more_body": False})


async def _aclose(it: AsyncIterator[Chunk]) -> None:
    close = getattr(it, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


class Dispatcher:
    """Top-level ASGI app: exact-match hot routes first, FastAPI for the rest."""

    def __init__(self, hot: dict[tuple[str, str], ASGIApp], fallback: ASGIApp) -> None:
        self.hot = hot
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            handler = self.hot.get((scope["method"], scope["path"]))
            if handler is not None:
                await handler(scope, receive, send)
                return
        await self.fallback(scope, receive, send)


def hot_routes(
    engine: Callable[[], RoutingEngine], max_body: int
) -> dict[tuple[str, str], ASGIApp]:
    return {
        ("POST", path): ChatHandler(surface, engine, max_body) for path, surface in SURFACES.items()
    }
