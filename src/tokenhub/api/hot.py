"""The hot surfaces as raw ASGI handlers.

FastAPI routing costs ~0.28 ms of CPU per request on this machine, more than the rest
of the gateway's work, so the traffic-carrying routes are matched here by exact path
and method and served without a framework. Per request, in order:

    per-IP token bucket → API key and scope → read and parse the body once →
    policy (capped at the key's remaining budget) → plan → per-key rpm/tpm →
    budget reservation → dispatch (whole or streamed) → settle → one Outcome

Nothing here awaits a database: keys come from the key ring's memory, limits and
budgets from the shared-state port, and the Outcome goes to the recorder's queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from tokenhub.api.surfaces import SURFACES, StreamEncoder, Surface
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
from tokenhub.routing.engine import RoutingEngine
from tokenhub.security.budget import Reservation
from tokenhub.security.clientip import ClientIP
from tokenhub.security.guard import Guard, Principal
from tokenhub.security.limits import RateLimiter
from tokenhub.types import ChatRequest, Chunk, Decision, Outcome, Usage

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


@dataclass(slots=True)
class HotDeps:
    """What the hot routes need, built once by the app's lifespan."""

    engine: RoutingEngine
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
    status: int = 200
    principal: Principal | None = None
    chat: ChatRequest | None = None
    decision: Decision | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    ttft_ms: float | None = None
    error: TokenHubError | None = None
    error_class: str | None = None

    def fail(self, err: TokenHubError) -> None:
        self.status, self.error = err.status, err
        if err.decision is not None:
            self.decision = err.decision
        if self.error_class is None:
            self.error_class = "client" if err.status < 500 else "upstream"

    def outcome(self) -> Outcome:
        d = self.decision
        model = d.model if d is not None else None
        return Outcome(
            request_id=self.request_id,
            surface=self.surface,
            started_at=self.started_at,
            status=self.status,
            latency_ms=(time.perf_counter() - self.t0) * 1000.0,
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
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if 0 < len(value) <= 128 and value.isascii() and value.isprintable():
                return str(value.decode())
            break
    return secrets.token_hex(12)


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return bytes(value)
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing more than ``limit`` bytes with a 413."""
    length = _header(scope, b"content-length")
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


def _cap_output(chat: ChatRequest, out_tokens: int) -> None:
    """A budgeted key's request gets an explicit output cap, so the reservation made
    for it bounds what it can cost."""
    if chat.max_tokens is None:
        chat.max_tokens = out_tokens
        if chat.raw is not None:
            chat.raw["max_tokens"] = out_tokens


class ChatHandler:
    """Serves one surface: guard, parse, route, answer (whole or streamed), record."""

    def __init__(self, surface: Surface, deps: Callable[[], HotDeps]) -> None:
        self.surface = surface
        self._deps = deps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        deps = self._deps()
        ex = Exchange(request_id_of(scope), self.surface.name, time.time(), time.perf_counter())
        cors = _cors_headers(scope, deps.cors_origins)
        deps.metrics.in_flight_inc()
        try:
            with deps.tracing.request_span(scope["path"], ex.request_id, self.surface.name):
                await self._serve(deps, ex, scope, receive, send, cors)
        finally:
            deps.metrics.in_flight_dec()
            if deps.recorder is not None:
                deps.recorder.record(ex.outcome())

    async def _serve(
        self,
        deps: HotDeps,
        ex: Exchange,
        scope: Scope,
        receive: Receive,
        send: Send,
        cors: list[tuple[bytes, bytes]],
    ) -> None:
        try:
            await self._answer(deps, ex, scope, receive, send, cors)
        except TokenHubError as err:
            ex.fail(err)
            await self._error(send, err, ex.request_id, cors)
        except asyncio.CancelledError:
            ex.status, ex.error_class = 499, "client_closed"
            raise
        except Exception:
            log.exception("unhandled error on %s (request %s)", self.surface.name, ex.request_id)
            internal = UpstreamFailed("internal error")
            ex.fail(internal)
            ex.status, ex.error_class = 500, "internal"
            await self._error(send, internal, ex.request_id, cors, status=500)

    async def _answer(
        self,
        deps: HotDeps,
        ex: Exchange,
        scope: Scope,
        receive: Receive,
        send: Send,
        cors: list[tuple[bytes, bytes]],
    ) -> None:
        await self._admit_ip(deps, scope)
        ex.principal = await deps.guard.authenticate(scope["headers"], self.surface.scope)
        body = await read_body(scope, receive, deps.max_body)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadRequest("body: malformed JSON") from None
        parsed = self.surface.parse(data, ex.request_id)
        ex.chat = chat = parsed.chat
        engine = deps.engine
        policy = engine.policy(
            mode=parsed.mode,
            max_budget_usd=parsed.max_budget_usd,
            max_latency_ms=parsed.max_latency_ms,
            min_weight=parsed.min_weight,
        )
        remaining = await deps.guard.remaining_budget_usd(ex.principal)
        if remaining is not None:
            policy.max_budget_usd = min(policy.max_budget_usd, remaining)
            _cap_output(chat, engine.config.default_output_tokens)
        plan = engine.prepare(chat, policy)
        ex.decision = plan.decision
        await deps.guard.admit(ex.principal, plan.input_tokens + plan.output_tokens)
        held = await deps.guard.reserve(ex.principal, plan.max_cost_usd)
        try:
            with deps.tracing.routing_span() as span:
                if chat.stream:
                    await self._stream(deps, ex, plan, policy, receive, send, cors)
                else:
                    resp, ex.decision = await engine.complete(chat, policy, plan)
                    ex.usage = resp.usage
                    ex.cost_usd = _cost(ex.decision, resp.usage)
                    out = self.surface.encode(resp, ex.decision)
                    headers = [JSON_CT, *_routing_headers(ex.request_id, ex.decision), *cors]
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                    await send({"type": "http.response.body", "body": out})
                span.decision(ex.decision)
        except BaseException:
            await self._settle_failed(deps, ex, held)
            raise
        await deps.guard.settle(held, ex.cost_usd)

    async def _settle_failed(self, deps: HotDeps, ex: Exchange, held: Reservation) -> None:
        # Nothing reached the client: the request cost nothing. A stream cut short may
        # have been billed upstream: keep what the usage says, or the whole hold.
        if ex.ttft_ms is None:
            await deps.guard.release(held)
        else:
            await deps.guard.settle(held, ex.cost_usd or held.micro / 1_000_000)

    async def _admit_ip(self, deps: HotDeps, scope: Scope) -> None:
        client = scope.get("client")
        ip = deps.client_ip.resolve(
            client[0] if client else None, _header(scope, b"x-forwarded-for")
        )
        wait = await deps.limiter.check_ip(ip, rate=deps.ip_rate, burst=deps.ip_burst)
        if wait > 0:
            raise TooManyRequests("rate limit exceeded", retry_after=wait, code="rate_limited")

    async def _error(
        self,
        send: Send,
        err: TokenHubError,
        rid: str,
        cors: list[tuple[bytes, bytes]],
        status: int = 0,
    ) -> None:
        headers = [JSON_CT, (b"x-request-id", rid.encode()), *cors]
        headers += [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
        await send(
            {"type": "http.response.start", "status": status or err.status, "headers": headers}
        )
        await send({"type": "http.response.body", "body": self.surface.render_error(err)})

    async def _stream(
        self,
        deps: HotDeps,
        ex: Exchange,
        plan: Any,
        policy: Any,
        receive: Receive,
        send: Send,
        cors: list[tuple[bytes, bytes]],
    ) -> None:
        assert ex.chat is not None
        chunks, ex.decision = await deps.engine.open_stream(ex.chat, policy, plan)
        enc = self.surface.stream_encoder(ex.chat, ex.decision)
        try:
            headers = [*SSE_HEADERS, *_routing_headers(ex.request_id, ex.decision), *cors]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            pump = asyncio.ensure_future(self._pump(ex, chunks, enc, send))
            watcher = asyncio.ensure_future(_wait_disconnect(receive))
            try:
                await asyncio.wait((pump, watcher), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (pump, watcher):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if not pump.done() or pump.cancelled():
                ex.status, ex.error_class = 499, "client_closed"
        finally:
            await _aclose(chunks)

    async def _pump(
        self, ex: Exchange, chunks: AsyncIterator[Chunk], enc: StreamEncoder, send: Send
    ) -> None:
        try:
            async for chunk in chunks:
                if chunk.usage is not None:
                    ex.usage = chunk.usage
                data = enc.encode(chunk)
                if data:
                    if ex.ttft_ms is None:
                        ex.ttft_ms = (time.perf_counter() - ex.t0) * 1000.0
                    await send({"type": "http.response.body", "body": data, "more_body": True})
            tail = enc.finish()
        except TokenHubError as err:
            ex.fail(err)
            tail = enc.error_event(err)
        except Exception as exc:  # an upstream failure after the first byte
            log.warning(
                "stream %s ended by upstream failure: %s", ex.request_id, type(exc).__name__
            )
            broken = UpstreamFailed("upstream failed mid-stream")
            ex.fail(broken)
            ex.error_class = str(getattr(exc, "error_class", "upstream"))
            tail = enc.error_event(broken)
        ex.cost_usd = _cost(ex.decision, ex.usage)
        await send({"type": "http.response.body", "body": tail, "more_body": False})


def _cost(d: Decision | None, usage: Usage) -> float:
    return d.model.cost(usage) if d is not None and d.model is not None else 0.0


def _cors_headers(scope: Scope, allowed: frozenset[bytes]) -> list[tuple[bytes, bytes]]:
    if not allowed:
        return []
    origin = _header(scope, b"origin")
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


def hot_routes(deps: Callable[[], HotDeps]) -> dict[tuple[str, str], ASGIApp]:
    return {("POST", path): ChatHandler(surface, deps) for path, surface in SURFACES.items()}
