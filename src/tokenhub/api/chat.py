"""The chat routes (/v1/chat/completions, /v1/messages, /v1/chat) on the guarded frame.

Per request, after the frame's guard and parse: the surface builds the neutral request;
in-band ``@@tokenhub`` directives are applied and stripped; an alias in the model hint
is resolved; the policy is capped at the key's remaining budget; the engine plans; the
key's rpm/tpm buckets are charged; the plan's costliest candidate is reserved against
the budget; the request is dispatched (whole, with output shaping, or streamed); the
reservation settles to the real cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from tokenhub.api.hot import (
    ASGIApp,
    Exchange,
    GuardedHandler,
    HotDeps,
    Receive,
    Send,
    routing_headers,
    send_json,
)
from tokenhub.api.surfaces import SURFACES, Parsed, StreamEncoder, Surface
from tokenhub.errors import NoEligibleModel, TokenHubError, TooManyRequests, UpstreamFailed
from tokenhub.routing import directives
from tokenhub.routing.engine import Plan
from tokenhub.routing.shaping import (
    OutputFormat,
    from_response_format,
    repair_messages,
    shape,
    with_hint,
)
from tokenhub.security.budget import Reservation
from tokenhub.types import ChatRequest, ChatResponse, Chunk, Decision, Dialect, Policy, Usage

log = logging.getLogger("tokenhub.api")

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class ChatHandler(GuardedHandler):
    """Serves one chat surface."""

    def __init__(self, surface: Surface, deps: Callable[[], HotDeps]) -> None:
        super().__init__(deps)
        self.chat_surface = surface
        self.surface = surface.name
        self.scope = surface.scope

    def render_error(self, err: TokenHubError) -> bytes:
        return self.chat_surface.render_error(err)

    async def handle(
        self, deps: HotDeps, ex: Exchange, data: Any, receive: Receive, send: Send
    ) -> None:
        parsed = self.chat_surface.parse(data, ex.request_id)
        ex.chat = chat = parsed.chat
        policy, fmt, ex.alias = self._prepare(deps, parsed)
        assert ex.principal is not None
        guard = deps.guard
        plan = await _plan_within_budget(deps, ex, chat, policy)
        await guard.admit(ex.principal, plan.input_tokens + plan.output_tokens)
        held = await guard.reserve(ex.principal, plan.max_cost_usd)
        try:
            with deps.tracing.routing_span() as span:
                if chat.stream:
                    await self._stream(deps, ex, plan, policy, receive, send)
                else:
                    await self._complete(deps, ex, plan, policy, fmt, send)
                if ex.decision is not None:
                    span.decision(ex.decision)
        except BaseException:
            await _settle_failed(deps, ex, held)
            raise
        if ex.status == 200:
            await guard.settle(held, ex.cost_usd)
            admitted = plan.input_tokens + plan.output_tokens
            await guard.charge_tokens(ex.principal, admitted, ex.usage.total_tokens)
        else:  # a stream that ended early: the client left or the upstream broke
            await _settle_failed(deps, ex, held)

    def _prepare(
        self, deps: HotDeps, parsed: Parsed
    ) -> tuple[Policy, OutputFormat | None, str | None]:
        """Directives, alias and output format folded into the request; its policy."""
        chat = parsed.chat
        found, chat.messages = directives.extract(chat.messages)
        if found is not None and chat.raw is not None:
            strip = (
                directives.strip_raw_anthropic
                if chat.dialect == Dialect.ANTHROPIC
                else directives.strip_raw_openai
            )
            chat.raw = strip(chat.raw)
        o = directives.apply(
            found,
            mode=parsed.mode,
            max_budget_usd=parsed.max_budget_usd,
            max_latency_ms=parsed.max_latency_ms,
            min_weight=parsed.min_weight,
            model=chat.model,
        )
        chat.model, alias = deps.aliases.resolve_detail(o.model)
        policy = deps.engine.policy(o.mode, o.max_budget_usd, o.max_latency_ms, o.min_weight)
        fmt = None if chat.stream else _output_format(parsed, found)
        if fmt is not None:
            chat.messages = with_hint(chat.messages, fmt)
            chat.raw = None  # the body changed: no pass-through of the client's bytes
        return policy, fmt, alias

    async def _complete(
        self,
        deps: HotDeps,
        ex: Exchange,
        plan: Plan,
        policy: Policy,
        fmt: OutputFormat | None,
        send: Send,
    ) -> None:
        assert ex.chat is not None
        resp, ex.decision = await deps.engine.complete(ex.chat, policy, plan)
        _note_alias(ex)
        ex.usage = resp.usage
        ex.cost_usd = _cost(ex.decision, resp.usage)
        if fmt is not None:
            resp = await self._shape(deps, ex, resp, policy, fmt)
        await send_json(send, ex, self.chat_surface.encode(resp, ex.decision), ex.decision)

    async def _shape(
        self, deps: HotDeps, ex: Exchange, resp: ChatResponse, policy: Policy, fmt: OutputFormat
    ) -> ChatResponse:
        """Validate the answer's format, with one repair call on the same model."""
        chat, decision = ex.chat, ex.decision
        assert chat is not None and decision is not None and decision.model is not None

        async def repair(bad: str, errors: list[str]) -> str:
            retry = replace(
                chat,
                messages=repair_messages(chat.messages, bad, errors),
                model=decision.model.id if decision.model else None,
                raw=None,
            )
            fixed, d = await deps.engine.complete(retry, policy)
            ex.usage = Usage(
                ex.usage.prompt_tokens + fixed.usage.prompt_tokens,
                ex.usage.completion_tokens + fixed.usage.completion_tokens,
            )
            ex.cost_usd += _cost(d, fixed.usage)
            return fixed.content or ""

        shaped = await shape(resp.content or "", fmt, repair)
        # The client sees what the answer cost in all: the repair call included.
        return replace(resp, content=shaped.text, usage=ex.usage, raw=None, dialect=Dialect.NONE)

    async def _stream(
        self,
        deps: HotDeps,
        ex: Exchange,
        plan: Plan,
        policy: Policy,
        receive: Receive,
        send: Send,
    ) -> None:
        assert ex.chat is not None
        chunks, ex.decision = await deps.engine.open_stream(ex.chat, policy, plan)
        _note_alias(ex)
        enc = self.chat_surface.stream_encoder(ex.chat, ex.decision)
        try:
            headers = [*SSE_HEADERS, *routing_headers(ex.request_id, ex.decision), *ex.cors]
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
            if pump.cancelled():
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
                        ex.ttft_ms = ex.elapsed_ms()
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


async def _plan_within_budget(
    deps: HotDeps, ex: Exchange, chat: ChatRequest, policy: Policy
) -> Plan:
    """Plan with the policy capped at the key's remaining budget. When only the cap
    stands between the request and a model, the answer is 429 ``budget exceeded``."""
    assert ex.principal is not None
    remaining = await deps.guard.remaining_budget_usd(ex.principal)
    engine = deps.engine
    if remaining is None or remaining >= policy.max_budget_usd:
        plan = engine.prepare(chat, policy)
    else:
        _cap_output(chat, engine.config.default_output_tokens)
        try:
            plan = engine.prepare(chat, replace(policy, max_budget_usd=remaining))
        except NoEligibleModel as capped:
            try:
                engine.prepare(chat, policy)
            except TokenHubError:
                raise capped from None
            raise TooManyRequests("budget exceeded", code="budget_exceeded") from None
    ex.decision = plan.decision
    return plan


def _note_alias(ex: Exchange) -> None:
    """A request that named an alias says so in its routing reason."""
    d = ex.decision
    if ex.alias is not None and d is not None and d.reason == "model-hint":
        d.reason = f"alias:{ex.alias}"


def _output_format(parsed: Parsed, found: directives.Directives | None) -> OutputFormat | None:
    fmt = parsed.output_format or from_response_format(parsed.chat.response_format)
    if fmt is None and found is not None and found.output_schema is not None:
        fmt = OutputFormat("json", found.output_schema)
    return fmt


def _cap_output(chat: ChatRequest, out_tokens: int) -> None:
    """A budgeted key's request gets an explicit output cap, so the reservation made
    for it bounds what it can cost."""
    if chat.max_tokens is None:
        chat.max_tokens = out_tokens
        if chat.raw is not None:
            chat.raw["max_tokens"] = out_tokens


async def _settle_failed(deps: HotDeps, ex: Exchange, held: Reservation) -> None:
    # Nothing reached the client: the request cost nothing. A stream cut short may have
    # been billed upstream: keep what its usage says, or the whole hold.
    if ex.ttft_ms is None:
        await deps.guard.release(held)
    else:
        await deps.guard.settle(held, ex.cost_usd or held.micro / 1_000_000)


def _cost(d: Decision | None, usage: Usage) -> float:
    return d.model.cost(usage) if d is not None and d.model is not None else 0.0


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _aclose(it: AsyncIterator[Chunk]) -> None:
    close = getattr(it, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


def chat_routes(deps: Callable[[], HotDeps]) -> dict[tuple[str, str], ASGIApp]:
    return {("POST", path): ChatHandler(surface, deps) for path, surface in SURFACES.items()}
