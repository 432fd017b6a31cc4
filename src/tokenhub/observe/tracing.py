"""OpenTelemetry tracing, opt-in: spans for the request, the routing decision and each
upstream attempt, and the W3C ``traceparent`` handed upstream.

``Tracing.disabled()`` is what runs unless ``TOKENHUB_OTEL_ENABLED`` is set: every method
then returns at once (one attribute test) and the context managers are one shared no-op
object, so the hot path pays nothing. An enabled ``Tracing`` owns its own
``TracerProvider`` (never the global one) exporting over OTLP/HTTP, or to the exporter
handed in (tests pass the in-memory exporter).

    with tracing.request_span("chat", request_id, "openai", headers) as span:
        with tracing.routing_span() as routing:
            with tracing.attempt_span(model, provider):
                tracing.inject(target.headers)      # traceparent for the upstream call
                ...
            routing.decision(decision)
        span.set("tokenhub.status", 200)
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tokenhub.errors import ProviderError
from tokenhub.types import Decision

MODEL = "tokenhub.model"
PROVIDER = "tokenhub.provider"
ERROR_CLASS = "tokenhub.error_class"
REQUEST_ID = "tokenhub.request_id"
SURFACE = "tokenhub.surface"
TRACES_PATH = "/v1/traces"

_PROPAGATOR = TraceContextTextMapPropagator()  # stateless: safe to share


class SpanHandle:
    """What a span context manager yields: set attributes and mark errors."""

    __slots__ = ("span",)

    def __init__(self, span: Span | None) -> None:
        self.span = span

    def set(self, key: str, value: Any) -> None:
        """Set one attribute (None values are skipped)."""
        if self.span is not None and value is not None:
            self.span.set_attribute(key, value)

    def error(self, error_class: str, message: str | None = None) -> None:
        """Mark the span failed with an error class (e.g. ``transient``)."""
        if self.span is not None:
            self.span.set_attribute(ERROR_CLASS, str(error_class))
            self.span.set_status(Status(StatusCode.ERROR, message))

    def decision(self, decision: Decision) -> None:
        """Record the outcome of a routing decision on this span."""
        if self.span is None:
            return
        _set_decision(self.span, decision)


class _NoopContext(AbstractContextManager[SpanHandle]):
    """One shared, stateless context manager for the disabled path."""

    handle = SpanHandle(None)

    def __enter__(self) -> SpanHandle:
        return self.handle

    def __exit__(self, *exc: object) -> None:
        return None


_NOOP = _NoopContext()


class Tracing:
    """Spans for TokenHub's request path; a no-op unless built enabled."""

    def __init__(
        self,
        service_name: str = "tokenhub",
        endpoint: str | None = None,
        exporter: SpanExporter | None = None,
    ) -> None:
        resource = Resource.create({"service.name": service_name})
        self._provider: TracerProvider | None = TracerProvider(resource=resource)
        if exporter is not None:
            # Tests read spans right after they end: export synchronously.
            self._provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            self._provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(endpoint)))
        self._tracer: Tracer | None = self._provider.get_tracer("tokenhub")

    @classmethod
    def disabled(cls) -> Tracing:
        """A Tracing whose every method does nothing."""
        self = cls.__new__(cls)
        self._provider = None
        self._tracer = None
        return self

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    # -- spans ---------------------------------------------------------------------

    def request_span(
        self,
        name: str,
        request_id: str,
        surface: str,
        carrier: Mapping[str, str] | None = None,
    ) -> AbstractContextManager[SpanHandle]:
        """The inbound request's span; continues the client's trace when ``carrier``
        (the request headers, lower-cased names) holds a ``traceparent``."""
        if self._tracer is None:
            return _NOOP
        parent = _PROPAGATOR.extract(carrier) if carrier else None
        attrs = {REQUEST_ID: request_id, SURFACE: surface}
        return self._span(self._tracer, name, SpanKind.SERVER, attrs, parent)

    def routing_span(self, decision: Decision | None = None) -> AbstractContextManager[SpanHandle]:
        """The routing decision's span; ``decision`` (or ``handle.decision(d)`` later)
        adds the chosen model, provider, mode, reason and attempt count."""
        if self._tracer is None:
            return _NOOP
        return self._routing(self._tracer, decision)

    def attempt_span(self, model: str, provider: str) -> AbstractContextManager[SpanHandle]:
        """One upstream attempt; a ``ProviderError`` raised inside sets its error class."""
        if self._tracer is None:
            return _NOOP
        attrs = {MODEL: model, PROVIDER: provider}
        return self._span(self._tracer, "tokenhub.attempt", SpanKind.CLIENT, attrs, None)

    def inject(self, headers: MutableMapping[str, str]) -> None:
        """Add ``traceparent`` (and ``tracestate``) for the current span to ``headers``."""
        if self._tracer is None:
            return
        _PROPAGATOR.inject(headers)

    async def stop(self) -> None:
        """Flush and shut the exporter down (idempotent; off the event loop)."""
        provider, self._provider = self._provider, None
        self._tracer = None
        if provider is not None:
            await asyncio.to_thread(provider.shutdown)

    # -- internals -----------------------------------------------------------------

    @staticmethod
    @contextmanager
    def _span(
        tracer: Tracer,
        name: str,
        kind: SpanKind,
        attrs: dict[str, Any],
        parent: Context | None,
    ) -> Iterator[SpanHandle]:
        # The SDK's own exception recording would copy the exception's text into the
        # span; only the kind of failure is kept, so no message can leak a secret.
        with tracer.start_as_current_span(
            name,
            context=parent,
            kind=kind,
            attributes=attrs,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            handle = SpanHandle(span)
            try:
                yield handle
            except ProviderError as exc:
                handle.error(str(exc.error_class), type(exc).__name__)
                raise
            except BaseException as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise

    @contextmanager
    def _routing(self, tracer: Tracer, decision: Decision | None) -> Iterator[SpanHandle]:
        with self._span(tracer, "tokenhub.route", SpanKind.INTERNAL, {}, None) as handle:
            try:
                yield handle
            finally:
                if decision is not None:
                    handle.decision(decision)


def _set_decision(span: Span, d: Decision) -> None:
    if d.model is not None:
        span.set_attribute(MODEL, d.model.id)
    if d.provider_id:
        span.set_attribute(PROVIDER, d.provider_id)
    span.set_attribute("tokenhub.mode", d.mode)
    span.set_attribute("tokenhub.reason", d.reason)
    span.set_attribute("tokenhub.attempts", len(d.attempts))
    failed = [a for a in d.attempts if a.error_class is not None]
    if failed and len(failed) == len(d.attempts):
        span.set_attribute(ERROR_CLASS, str(failed[-1].error_class))
        span.set_status(Status(StatusCode.ERROR, "every attempt failed"))


def _otlp_exporter(endpoint: str | None) -> SpanExporter:
    # Imported only when tracing is on: the exporter pulls in protobuf and requests.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if endpoint and not endpoint.rstrip("/").endswith(TRACES_PATH):
        endpoint = endpoint.rstrip("/") + TRACES_PATH
    return OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
