"""Prometheus metrics: one registry per app, fed by finished requests and live gauges.

``Metrics`` owns its own ``CollectorRegistry`` (never the global one), so several apps can
live in one process. Request metrics are updated from ``Outcome`` records off the hot
path (``MetricsSink`` is the recorder's sink); the few live values (requests in flight,
provider health, vault lock, recorder queue) are read when Prometheus scrapes.

Label values come only from bounded sets: registered model and provider ids (anything
else becomes ``"other"``, a missing one ``"none"``), known routing modes, error classes,
and HTTP status codes. Nothing a client types can mint a new series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from tokenhub.config import MODES
from tokenhub.observe.health import DEGRADED, HEALTHY, HealthTracker
from tokenhub.types import ErrorClass, Outcome

LATENCY_BUCKETS_MS = tuple(float(10 * 2**i) for i in range(10))
"""10, 20, 40 … 5120 ms (base 2); Prometheus adds +Inf."""

HEALTH_STATE_VALUES = {HEALTHY: 0, DEGRADED: 1}
"""Gauge value per tracker state; anything else (down, half-open) is 2."""

NONE = "none"
OTHER = "other"
_ERROR_CLASSES = frozenset(c.value for c in ErrorClass)


class CatalogView(Protocol):
    """What metrics need from the catalog: the registered ids (``Catalog`` fits)."""

    @property
    def providers(self) -> Mapping[str, Any]: ...

    @property
    def models(self) -> Mapping[str, Any]: ...


class Metrics:
    """The gateway's Prometheus metrics, in a registry of their own.

    ``catalog`` bounds the model and provider labels and lists the providers whose
    health is exported; ``health`` is read at scrape time. Live values from components
    built later (recorder, vault) are bound with ``bind_recorder`` and ``bind_vault``.
    """

    def __init__(
        self, *, catalog: CatalogView | None = None, health: HealthTracker | None = None
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._catalog = catalog
        self._health = health
        self._in_flight = 0
        self._queue_depth: Callable[[], int] = _zero
        self._dropped: Callable[[], int] = _zero
        self._vault_locked: Callable[[], bool] = _false
        self._define(self.registry)
        self.registry.register(_LiveCollector(self))

    def _define(self, r: CollectorRegistry) -> None:
        pair = ("model", "provider")
        self._requests = Counter(
            "tokenhub_requests_total",
            "Finished requests by routing mode, model, provider and HTTP status.",
            ("mode", "model", "provider", "status"),
            registry=r,
        )
        self._latency = Histogram(
            "tokenhub_request_latency_ms",
            "Whole-request latency in milliseconds.",
            pair,
            buckets=LATENCY_BUCKETS_MS,
            registry=r,
        )
        self._ttft = Histogram(
            "tokenhub_time_to_first_token_ms",
            "Streams: milliseconds until the first content byte.",
            pair,
            buckets=LATENCY_BUCKETS_MS,
            registry=r,
        )
        self._cost = Counter("tokenhub_cost_usd_total", "Spend in USD.", pair, registry=r)
        self._tokens_in = Counter(
            "tokenhub_input_tokens_total", "Prompt tokens sent upstream.", pair, registry=r
        )
        self._tokens_out = Counter(
            "tokenhub_output_tokens_total", "Completion tokens received.", pair, registry=r
        )
        self._failovers = Counter(
            "tokenhub_failovers_total",
            "Failed upstream attempts the router moved on from, by error class.",
            ("error_class",),
            registry=r,
        )

    # -- live values ---------------------------------------------------------------

    def in_flight_inc(self) -> None:
        """A request started (hot path: a plain integer add)."""
        self._in_flight += 1

    def in_flight_dec(self) -> None:
        """A request finished."""
        self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def bind_recorder(self, queue_depth: Callable[[], int], dropped: Callable[[], int]) -> None:
        """Read the recorder's queue depth and dropped-record count at scrape time."""
        self._queue_depth = queue_depth
        self._dropped = dropped

    def bind_vault(self, locked: Callable[[], bool]) -> None:
        """Read whether the vault is locked at scrape time."""
        self._vault_locked = locked

    # -- outcomes ------------------------------------------------------------------

    def observe(self, o: Outcome) -> None:
        """Count one finished request."""
        model, provider = self._model_label(o.model), self._provider_label(o.provider)
        mode = o.mode if o.mode in MODES else OTHER
        status = str(o.status) if 100 <= o.status <= 599 else OTHER
        self._requests.labels(mode, model, provider, status).inc()
        self._latency.labels(model, provider).observe(o.latency_ms)
        if o.stream and o.ttft_ms is not None:
            self._ttft.labels(model, provider).observe(o.ttft_ms)
        if o.cost_usd > 0:
            self._cost.labels(model, provider).inc(o.cost_usd)
        if o.usage.prompt_tokens > 0:
            self._tokens_in.labels(model, provider).inc(o.usage.prompt_tokens)
        if o.usage.completion_tokens > 0:
            self._tokens_out.labels(model, provider).inc(o.usage.completion_tokens)
        for error_class in failover_classes(o):
            cls = error_class if error_class in _ERROR_CLASSES else OTHER
            self._failovers.labels(cls).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type, for ``GET /metrics``."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # -- labels --------------------------------------------------------------------

    def _model_label(self, model: str | None) -> str:
        if not model:
            return NONE
        if self._catalog is not None and model not in self._catalog.models:
            return OTHER
        return model

    def _provider_label(self, provider: str | None) -> str:
        if not provider:
            return NONE
        if self._catalog is not None and provider not in self._catalog.providers:
            return OTHER
        return provider

    def _health_states(self) -> Iterable[tuple[str, int]]:
        if self._catalog is None or self._health is None:
            return ()
        # Only provider ids: endpoint keys carry URLs, which have no place in a label.
        states = ((pid, self._health.state(pid).state) for pid in sorted(self._catalog.providers))
        return ((pid, HEALTH_STATE_VALUES.get(state, 2)) for pid, state in states)


def failover_classes(o: Outcome) -> list[str]:
    """Error classes of the attempts that failed and were followed by another attempt."""
    if o.decision is None:
        return []
    attempts = o.decision.attempts
    return [str(a.error_class) for a in attempts[:-1] if a.error_class is not None]


class _LiveCollector(Collector):
    """Values that live elsewhere, read at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def describe(self) -> Iterable[Metric]:
        # Returning nothing keeps the registry from calling collect() at registration.
        return ()

    def collect(self) -> Iterator[Metric]:
        m = self._m
        yield _gauge("tokenhub_requests_in_flight", "Requests being served now.", m._in_flight)
        yield _gauge("tokenhub_vault_locked", "1 when the vault is locked.", int(m._vault_locked()))
        yield _gauge(
            "tokenhub_recorder_queue_depth", "Outcomes waiting to be written.", m._queue_depth()
        )
        dropped = CounterMetricFamily(
            "tokenhub_recorder_dropped", "Outcomes dropped because the queue was full."
        )
        dropped.add_metric([], m._dropped())
        yield dropped
        health = GaugeMetricFamily(
            "tokenhub_provider_health_state",
            "Provider health: 0 healthy, 1 degraded, 2 down or half-open.",
            labels=["provider"],
        )
        for pid, value in m._health_states():
            health.add_metric([pid], value)
        yield health


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _zero() -> int:
    return 0


def _false() -> bool:
    return False


class MetricsSink:
    """The recorder's sink that turns each batch of outcomes into metric updates."""

    name = "metrics"

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def write(self, batch: Sequence[Outcome]) -> None:
        for outcome in batch:
            self.metrics.observe(outcome)
