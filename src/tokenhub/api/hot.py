"""The hot routes as raw ASGI handlers, and the dispatcher in front of FastAPI.

FastAPI routing costs ~0.28 ms of CPU per request on this machine, more than the rest
of the gateway's work, so the traffic-carrying routes are matched here by exact path
and method and served without a framework. Every hot handler shares one guarded
frame (``GuardedHandler``):

    per-IP token bucket → API key and scope → one body read and orjson parse →
    Idempotency-Key claim (requests that carry one, streamed or not) → the route's own
    work (``handle``) → one Outcome to the recorder

Nothing here awaits a database: keys come from the key ring's memory, limits, budgets
and idempotency entries from the shared-state port, and the Outcome goes to the
recorder's queue.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from tokenhub.errors import (
    BadRequest,
    PayloadTooLarge,
    TokenHubError,
    TooManyRequests,
    UpstreamFailed,
)
from tokenhub.observe.metrics import Metrics
from tokenhub.observe.recorder import Recorder
from tokenhub.observe.tracing import Tracing
from tokenhub.routing.aliases import AliasTable
from tokenhub.routing.embedding import EmbeddingRouter
from tokenhub.routing.engine import RoutingEngine
from tokenhub.security.clientip import ClientIP
from tokenhub.security.guard import Guard, Principal
from tokenhub.security.idempotency import (
    Conflict,
    Idempotency,
    Replay,
    parse_key,
    request_digest,
)
from tokenhub.security.limits import RateLimiter
from tokenhub.types import ChatRequest, Decision, Outcome, Usage

log = logging.getLogger("tokenhub.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON_CT = (b"content-type", b"application/json")
# What a replayed response keeps of the original's headers.
_REPLAYED_HEADERS = (
    b"content-type",
    b"x-tokenhub-model",
    b"x-tokenhub-provider",
    b"x-tokenhub-reason",
)


@dataclass(slots=True)
class HotDeps:
    """What the hot routes need, built once by the app's lifespan."""

    engine: RoutingEngine
    embeddings: EmbeddingRouter
    aliases: AliasTable
    idempotency: Idempotency
    guard: Guard
    limiter: RateLimiter
    client_ip: ClientIP
    ip_rate: float
    ip_burst: float
    recorder: Recorder | None
    metrics: Metrics
    tracing: Tracing
    max_body: int
    cors_origins: frozenset[bytes] = frozenset()


@dataclass(slots=True)
class Exchange:
    """One request's facts as they become known; ends as its ``Outcome``."""

    request_id: str
    surface: str
    started_at: float
    t0: float
    cors: Headers
    status: int = 200
    principal: Principal | None = None
    chat: ChatRequest | None = None
    decision: Decision | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    ttft_ms: float | None = None
    error: TokenHubError | None = None
    error_class: str | None = None
    alias: str | None = None  # the alias the client named, if any

    def fail(self, err: TokenHubError) -> None:
        self.status, self.error = err.status, err
        if err.decision is not None:
            self.decision = err.decision
        if self.error_class is None:
            self.error_class = "client" if err.status < 500 else "upstream"

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.t0) * 1000.0

    def outcome(self) -> Outcome:
        d = self.decision
        model = d.model if d is not None else None
        return Outcome(
            request_id=self.request_id,
            surface=self.surface,
            started_at=self.started_at,
            status=self.status,
            latency_ms=self.elapsed_ms(),
            mode=d.mode if d is not None else "normal",
            model=model.id if model is not None else None,
            provider=model.provider_id if model is not None else None,
            api_key_id=self.principal.id if self.principal is not None else None,
            stream=bool(self.chat and self.chat.stream),
            usage=self.usage,
            cost_usd=self.cost_usd,
            ttft_ms=self.ttft_ms,
            error_class=self.error_class,
            error=self.error.message[:300] if self.error is not None else None,
            reason=d.reason if d is not None else "",
            decision=d,
        )


def request_id_of(scope: Scope) -> str:
    """The client's X-Request-ID when it is sane, else a fresh one."""
    value = header(scope, b"x-request-id")
    if value is not None and 0 < len(value) <= 128 and value.isascii():
        text = value.decode()
        if text.isprintable():
            return text
    return secrets.token_hex(12)


def trace_headers(scope: Scope) -> dict[str, str]:
    """The W3C trace-context headers of the request (``traceparent``, ``tracestate``)."""
    return {
        name.decode(): bytes(value).decode("latin-1")
        for name, value in scope["headers"]
        if name in (b"traceparent", b"tracestate")
    }


def header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return bytes(value)
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing more than ``limit`` bytes with a 413."""
    length = header(scope, b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
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


def routing_headers(rid: str, d: Decision | None) -> Headers:
    headers = [(b"x-request-id", rid.encode())]
    if d is not None and d.model is not None:
        headers += [
            (b"x-tokenhub-model", d.model.id.encode()),
            (b"x-tokenhub-provider", d.provider_id.encode()),
            (b"x-tokenhub-reason", d.reason.encode()),
        ]
    return headers


async def send_json(send: Send, ex: Exchange, body: bytes, d: Decision | None) -> None:
    headers = [JSON_CT, *routing_headers(ex.request_id, d), *ex.cors]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Capture:
    """Wraps ``send`` to keep a copy of a whole response for replay (a stream's events
    are passed on as they come and kept too: replayed, they arrive in one block, which
    SSE clients read like any other stream)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = [
                (k.decode(), v.decode()) for k, v in message["headers"] if k in _REPLAYED_HEADERS
            ]
        elif message["type"] == "http.response.body":
            self.body.append(message.get("body", b""))
        await self._send(message)

    def final(self) -> bool:
        """A settled answer worth replaying; 5xx, 409 and 429 invite a retry instead."""
        return 200 <= self.status < 500 and self.status not in (409, 429)


class GuardedHandler(ABC):
    """The frame every hot route shares; subclasses implement ``handle`` and say how
    their dialect renders an error."""

    surface = ""
    scope = "chat"

    def __init__(self, deps: Callable[[], HotDeps]) -> None:
        self._deps = deps

    @abstractmethod
    def render_error(self, err: TokenHubError) -> bytes: ...

    @abstractmethod
    async def handle(
        self, deps: HotDeps, ex: Exchange, data: Any, receive: Receive, send: Send
    ) -> None:
        """The route's own work, after the guard and the body parse."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        deps = self._deps()
        ex = Exchange(
            request_id_of(scope),
            self.surface,
            time.time(),
            time.perf_counter(),
            _cors_headers(scope, deps.cors_origins),
        )
        deps.metrics.in_flight_inc()
        try:
            # The client's traceparent, when it sent one, makes our spans part of its trace.
            carrier = trace_headers(scope) if deps.tracing.enabled else None
            with deps.tracing.request_span(scope["path"], ex.request_id, self.surface, carrier):
                await self._serve(deps, ex, scope, receive, send)
        finally:
            deps.metrics.in_flight_dec()
            if deps.recorder is not None:
                deps.recorder.record(ex.outcome())

    async def _serve(
        self, deps: HotDeps, ex: Exchange, scope: Scope, receive: Receive, send: Send
    ) -> None:
        try:
            await self._admit_ip(deps, scope)
            ex.principal = await deps.guard.authenticate(scope["headers"], self.scope)
            body = await read_body(scope, receive, deps.max_body)
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise BadRequest("body: malformed JSON") from None
            key = parse_key(header(scope, b"idempotency-key"))
            if key is None:
                await self._handle(deps, ex, data, receive, send)
            else:
                await self._idempotent(deps, ex, key, data, receive, send)
        except TokenHubError as err:
            await self.error(send, ex, err)
        except asyncio.CancelledError:
            ex.status, ex.error_class = 499, "client_closed"
            raise

    async def _handle(
        self, deps: HotDeps, ex: Exchange, data: Any, receive: Receive, send: Send
    ) -> None:
        try:
            await self.handle(deps, ex, data, receive, send)
        except (TokenHubError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("unhandled error on %s (request %s)", self.surface, ex.request_id)
            internal = UpstreamFailed("internal error")
            ex.error_class = "internal"
            await self.error(send, ex, internal, status=500)

    async def _idempotent(
        self,
        deps: HotDeps,
        ex: Exchange,
        key: str,
        data: Any,
        receive: Receive,
        send: Send,
    ) -> None:
        assert ex.principal is not None
        owner = ex.principal.id
        claim = await deps.idempotency.begin(owner, key, request_digest(data))
        if isinstance(claim, Replay):
            ex.status = claim.status
            headers = [(k.encode(), v.encode()) for k, v in claim.headers]
            headers += [
                (b"x-request-id", ex.request_id.encode()),
                (b"idempotent-replayed", b"true"),
            ]
            await send({"type": "http.response.start", "status": claim.status, "headers": headers})
            await send({"type": "http.response.body", "body": claim.body})
            return
        if isinstance(claim, Conflict):
            raise claim.error()
        capture = _Capture(send)
        try:
            try:
                await self._handle(deps, ex, data, receive, capture.send)
            except TokenHubError as err:
                await self.error(capture.send, ex, err)
        except BaseException:
            await deps.idempotency.abandon(owner, key, token=claim.token)
            raise
        # A stream that broke (or whose client left) after its 200 head is not an
        # answer to replay: the exchange then says so while the head said 200.
        if capture.final() and ex.status == capture.status:
            stored = b"".join(capture.body)
            await deps.idempotency.complete(
                owner, key, capture.status, capture.headers, stored, token=claim.token
            )
        else:
            await deps.idempotency.abandon(owner, key, token=claim.token)

    async def error(self, send: Send, ex: Exchange, err: TokenHubError, status: int = 0) -> None:
        ex.fail(err)
        if status:
            ex.status = status
        headers = [JSON_CT, (b"x-request-id", ex.request_id.encode()), *ex.cors]
        headers += [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
        await send({"type": "http.response.start", "status": ex.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.render_error(err)})

    async def _admit_ip(self, deps: HotDeps, scope: Scope) -> None:
        client = scope.get("client")
        ip = deps.client_ip.resolve(
            client[0] if client else None, header(scope, b"x-forwarded-for")
        )
        wait = await deps.limiter.check_ip(ip, rate=deps.ip_rate, burst=deps.ip_burst)
        if wait > 0:
            raise TooManyRequests("rate limit exceeded", retry_after=wait, code="rate_limited")


def _cors_headers(scope: Scope, allowed: frozenset[bytes]) -> Headers:
    if not allowed:
        return []
    origin = header(scope, b"origin")
    if origin is None or (origin not in allowed and b"*" not in allowed):
        return []
    return [
        (b"access-control-allow-origin", origin),
        (
            b"access-control-expose-headers",
            b"x-request-id, x-tokenhub-model, x-tokenhub-provider, x-tokenhub-reason",
        ),
        (b"vary", b"origin"),
    ]


class Dispatcher:
    """Top-level ASGI app: exact-match hot routes first, FastAPI for the rest."""

    def __init__(self, hot: dict[tuple[str, str], ASGIApp], fallback: ASGIApp) -> None:
        self.hot = hot
        self.fallback = fallback
        self.on_exit_signal: Callable[[], None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            handler = self.hot.get((scope["method"], scope["path"]))
            if handler is not None:
                await handler(scope, receive, send)
                return
        await self.fallback(scope, receive, send)

    def begin_shutdown(self) -> None:
        """Called when the server is told to stop, before it waits for connections:
        lets long-lived streams (the event stream) end instead of holding it up."""
        if self.on_exit_signal is not None:
            self.on_exit_signal()
