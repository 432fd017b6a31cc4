"""OpenTelemetry end to end: a real gateway exporting OTLP/HTTP to a collector on loopback.

The official OpenAI SDK sends a request carrying the client's W3C ``traceparent``; the
collector decodes the protobuf export and the test checks the spans' nesting, their
attributes, that the gateway continued the client's trace, and that the upstream got a
``traceparent`` naming the attempt span.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.fakes.upstreams import FakeOpenAI, Reply
from tests.integration.harness import gateway_settings, run_gateway
from tests.integration.servers import serve_app

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]
    status_code: int
    service: str


class Collector:
    """An OTLP/HTTP trace receiver: an ASGI app keeping every exported span."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.content_types: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        status = 404
        if scope["method"] == "POST" and scope["path"] == "/v1/traces":
            self.content_types.append(headers.get("content-type", ""))
            if headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            self._keep(body)
            status = 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def _keep(self, body: bytes) -> None:
        export = ExportTraceServiceRequest.FromString(body)
        for rs in export.resource_spans:
            resource = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    self.spans.append(
                        Span(
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            kind=s.kind,
                            attributes={a.key: _value(a.value) for a in s.attributes},
                            status_code=s.status.code,
                            service=str(resource.get("service.name")),
                        )
                    )

    def named(self, name: str) -> list[Span]:
        return [s for s in self.spans if s.name == name]


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@pytest.fixture
async def collector() -> AsyncIterator[tuple[Collector, str]]:
    c = Collector()
    async with serve_app(c) as url:
        yield c, url


async def test_spans_reach_an_otlp_collector_and_continue_the_clients_trace(
    tmp_path: Path, fake_openai: FakeOpenAI, collector: tuple[Collector, str]
) -> None:
    received, endpoint = collector
    fake_openai.script(Reply(status=503), Reply(text="second try"))
    env = {"demo": "false", "otel_enabled": "true", "otel_endpoint": endpoint}
    env["otel_service_name"] = "tokenhub-e2e"
    async with run_gateway(gateway_settings(tmp_path, **env)) as g:
        await g.add_provider("oai", "openai", fake_openai.base_url, api_key="sk-upstream")
        await g.add_model("m-oai", "oai")
        client = openai.AsyncOpenAI(base_url=g.v1, api_key=g.api_key, max_retries=0)
        answer = await client.chat.completions.create(
            model="m-oai",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={
                "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01",
                "X-Request-ID": "trace-e2e-1",
            },
        )
        assert answer.choices[0].message.content == "second try"
        await client.close()
        upstream = [r.headers["traceparent"] for r in fake_openai.requests]
    # Leaving the block stopped the gateway, which flushes the span exporter.

    assert received.content_types and set(received.content_types) == {"application/x-protobuf"}
    (request,) = received.named("/v1/chat/completions")
    (route,) = received.named("tokenhub.route")
    attempts = received.named("tokenhub.attempt")
    assert len(attempts) == 2  # the 503 and the retry

    # One trace, the client's: our request span's parent is the client's span.
    assert {s.trace_id for s in (request, route, *attempts)} == {CLIENT_TRACE}
    assert request.parent_id == CLIENT_SPAN
    assert route.parent_id == request.span_id
    assert all(a.parent_id == route.span_id for a in attempts)
    assert request.service == "tokenhub-e2e"
    assert request.attributes["tokenhub.request_id"] == "trace-e2e-1"
    assert request.attributes["tokenhub.surface"] == "openai"

    failed, ok = sorted(attempts, key=lambda a: a.status_code != 2)
    assert failed.attributes["tokenhub.error_class"] == "transient"
    assert failed.status_code == 2  # STATUS_CODE_ERROR
    assert ok.attributes["tokenhub.model"] == "m-oai"
    assert ok.attributes["tokenhub.provider"] == "oai"

    # Each upstream call carried the traceparent of its own attempt span.
    assert len(upstream) == 2
    for header in upstream:
        version, trace_id, _parent, _flags = header.split("-")
        assert version == "00" and trace_id == CLIENT_TRACE
    assert {h.split("-")[2] for h in upstream} == {a.span_id for a in attempts}

    # No secret rides along in any exported attribute.
    dumped = repr([s.attributes for s in received.spans])
    assert "sk-upstream" not in dumped and g.api_key not in dumped


async def test_without_a_client_traceparent_the_gateway_starts_a_trace(
    tmp_path: Path, fake_openai: FakeOpenAI, collector: tuple[Collector, str]
) -> None:
    received, endpoint = collector
    env = {"demo": "false", "otel_enabled": "true", "otel_endpoint": endpoint + "/v1/traces"}
    async with run_gateway(gateway_settings(tmp_path, **env)) as g:
        await g.add_provider("oai", "openai", fake_openai.base_url, api_key="k")
        await g.add_model("m-oai", "oai")
        body = {"model": "m-oai", "messages": [{"role": "user", "content": "hi"}]}
        bad_parent = {"traceparent": "00-not-a-trace-01"}  # malformed: ignored, not a 4xx
        r = await g.client.post("/v1/chat/completions", json=body, headers=bad_parent)
        assert r.status_code == 200
    (request,) = received.named("/v1/chat/completions")
    assert request.parent_id == "" and len(request.trace_id) == 32
    assert request.trace_id != "0" * 32
    (attempt,) = received.named("tokenhub.attempt")
    assert attempt.trace_id == request.trace_id
