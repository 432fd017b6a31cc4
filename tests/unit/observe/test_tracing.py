"""Tracing: spans for request, routing and attempts; traceparent upstream; no-op when off."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.fakes.upstreams import FakeOpenAI
from tokenhub.errors import ProviderError
from tokenhub.observe.tracing import Tracing
from tokenhub.providers.openai import OpenAIAdapter
from tokenhub.types import (
    Attempt,
    ChatRequest,
    Decision,
    ErrorClass,
    Message,
    ModelConfig,
    ProviderConfig,
    Target,
)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def tracing(exporter: InMemorySpanExporter) -> AsyncIterator[Tracing]:
    t = Tracing("tokenhub-test", exporter=exporter)
    yield t
    await t.stop()


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {s.name: s for s in exporter.get_finished_spans()}


def test_disabled_tracing_is_a_shared_no_op() -> None:
    """Disabled: every context manager is the same no-op and inject adds nothing."""
    t = Tracing.disabled()
    assert not t.enabled
    cm = t.request_span("chat", "r1", "openai")
    assert cm is t.routing_span() is t.attempt_span("m", "p")
    headers: dict[str, str] = {}
    with cm as span, t.attempt_span("m", "p") as inner:
        span.set("x", 1)
        inner.error("transient")
        t.inject(headers)
    assert headers == {}


def test_disabled_path_costs_next_to_nothing() -> None:
    """A hundred thousand disabled attempt spans take well under a second."""
    t = Tracing.disabled()
    start = time.perf_counter()
    for _ in range(100_000):
        with t.attempt_span("m", "p"):
            pass
    assert time.perf_counter() - start < 1.0


def test_request_routing_and_attempt_spans_nest_with_attributes(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    """The attempt span is a child of routing, which is a child of the request span."""
    with (
        tracing.request_span("POST /v1/chat/completions", "req-9", "openai"),
        tracing.routing_span(),
        tracing.attempt_span("gpt-4o-mini", "oai"),
    ):
        pass
    spans = by_name(exporter)
    req = spans["POST /v1/chat/completions"]
    route, attempt = spans["tokenhub.route"], spans["tokenhub.attempt"]
    assert req.kind == SpanKind.SERVER and attempt.kind == SpanKind.CLIENT
    assert route.parent is not None and route.parent.span_id == req.context.span_id
    assert attempt.parent is not None and attempt.parent.span_id == route.context.span_id
    assert dict(req.attributes or {}) == {
        "tokenhub.request_id": "req-9",
        "tokenhub.surface": "openai",
    }
    assert dict(attempt.attributes or {}) == {
        "tokenhub.model": "gpt-4o-mini",
        "tokenhub.provider": "oai",
    }
    assert req.resource.attributes["service.name"] == "tokenhub-test"


def test_provider_error_in_attempt_sets_error_class(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    """A ProviderError inside an attempt marks the span failed with its error class."""
    with pytest.raises(ProviderError), tracing.attempt_span("m", "p"):
        raise ProviderError(ErrorClass.RATE_LIMITED, "429 from upstream key sk-xyz")
    span = by_name(exporter)["tokenhub.attempt"]
    assert (span.attributes or {})["tokenhub.error_class"] == "rate_limited"
    assert span.status.status_code == StatusCode.ERROR
    assert "sk-xyz" not in (span.status.description or "")
    assert all("sk-xyz" not in str(e.attributes) for e in span.events)


def test_routing_span_records_the_decision_as_it_ended(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    """The routing span carries the chosen model, provider, mode, reason and attempts."""
    decision = Decision(mode="cheap")
    with tracing.routing_span(decision):
        decision.model = ModelConfig("m2", "p2")
        decision.provider_id = "p2"
        decision.reason = "cheapest eligible"
        decision.attempts = [Attempt("m1", "p1", ErrorClass.TRANSIENT), Attempt("m2", "p2")]
    attrs = dict(by_name(exporter)["tokenhub.route"].attributes or {})
    assert attrs == {
        "tokenhub.model": "m2",
        "tokenhub.provider": "p2",
        "tokenhub.mode": "cheap",
        "tokenhub.reason": "cheapest eligible",
        "tokenhub.attempts": 2,
    }


def test_routing_span_marks_total_failure(tracing: Tracing, exporter: InMemorySpanExporter) -> None:
    """When every attempt failed, the routing span is an error with the last class."""
    with tracing.routing_span() as route:
        route.decision(Decision(attempts=[Attempt("m1", "p1", ErrorClass.FATAL)]))
    span = by_name(exporter)["tokenhub.route"]
    assert (span.attributes or {})["tokenhub.error_class"] == "fatal"
    assert span.status.status_code == StatusCode.ERROR


def test_inject_writes_the_current_span_traceparent(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    """inject() adds a W3C traceparent naming the current attempt span."""
    headers: dict[str, str] = {}
    with tracing.attempt_span("m", "p"):
        tracing.inject(headers)
    span = by_name(exporter)["tokenhub.attempt"]
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert version == "00" and int(flags, 16) & 1  # sampled
    assert int(trace_id, 16) == span.context.trace_id
    assert int(span_id, 16) == span.context.span_id


def test_inbound_traceparent_is_continued(tracing: Tracing, exporter: InMemorySpanExporter) -> None:
    """A client's traceparent makes the request span part of the client's trace."""
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with tracing.request_span("chat", "r1", "native", {"traceparent": parent}):
        pass
    span = by_name(exporter)["chat"]
    assert span.context.trace_id == int("0af7651916cd43dd8448eb211c80319c", 16)
    assert span.parent is not None and span.parent.span_id == int("b7ad6b7169203331", 16)


async def test_traceparent_reaches_the_upstream_through_target_headers(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    """The adapter forwards Target.headers, so the fake upstream sees our traceparent."""
    async with FakeOpenAI() as up:
        adapter = OpenAIAdapter(ProviderConfig("oai", "openai", [up.base_url]), lambda _: "k")
        target = Target(ModelConfig("fake-model", "oai"), "r1", timeout_s=5)
        try:
            with tracing.attempt_span("fake-model", "oai"):
                tracing.inject(target.headers)
                await adapter.complete(ChatRequest([Message("user", "hi")]), target)
        finally:
            await adapter.close()
        sent = up.requests[-1].headers["traceparent"]
    span = by_name(exporter)["tokenhub.attempt"]
    assert sent.split("-")[1] == format(span.context.trace_id, "032x")
    assert sent.split("-")[2] == format(span.context.span_id, "016x")


async def test_otlp_export_reaches_the_collector_on_stop() -> None:
    """Without an injected exporter spans go over OTLP/HTTP to {endpoint}/v1/traces."""
    received: list[tuple[str, str]] = []

    async def traces(request: web.Request) -> web.Response:
        received.append((request.path, request.content_type))
        await request.read()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    endpoint = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        tracing = Tracing("svc", endpoint)
        with tracing.request_span("chat", "r1", "openai"):
            pass
        await tracing.stop()
        await tracing.stop()  # idempotent
        assert not tracing.enabled
    finally:
        await runner.cleanup()
    assert received == [("/v1/traces", "application/x-protobuf")]
