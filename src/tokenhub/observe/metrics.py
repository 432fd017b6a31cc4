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

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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
        self._lost: Callable[[], Mapping[str, int]] = dict
        self._vault_locked: Callable[[], bool] = _false
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
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
        self._latency = BatchHistogram(
            "tokenhub_request_latency_ms",
            "Whole-request latency in milliseconds.",
            pair,
            LATENCY_BUCKETS_MS,
        )
        self._ttft = BatchHistogram(
            "tokenhub_time_to_first_token_ms",
            "Streams: milliseconds until the first content byte.",
            pair,
            LATENCY_BUCKETS_MS,
        )
        r.register(self._latency)
        r.register(self._ttft)
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

    def bind_recorder(
        self,
        queue_depth: Callable[[], int],
        dropped: Callable[[], int],
        lost: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        """Read the recorder's queue depth, dropped-record count and per-sink lost
        outcomes at scrape time."""
        self._queue_depth = queue_depth
        self._dropped = dropped
        if lost is not None:
            self._lost = lost

    def bind_vault(self, locked: Callable[[], bool]) -> None:
        """Read whether the vault is locked at scrape time."""
        self._vault_locked = locked

    # -- outcomes ------------------------------------------------------------------

    def observe(self, o: Outcome) -> None:
        """Count one finished request."""
        self.observe_batch((o,))

    def observe_batch(self, batch: Iterable[Outcome]) -> None:
        """Count a batch of finished requests.

        Counters are summed per label set first and incremented once each; histograms
        take each label set's values at once. Children come from a cache, because
        ``labels()`` costs more than the update itself.
        """
        agg = _BatchTotals()
        for o in batch:
            self._add(agg, o)
        self._apply(agg)

    def _add(self, agg: _BatchTotals, o: Outcome) -> None:
        pair = self._pair_label(o.model, o.provider)
        mode = o.mode if o.mode in MODES else OTHER
        status = str(o.status) if 100 <= o.status <= 599 else OTHER
        key = (mode, *pair, status)
        agg.requests[key] = agg.requests.get(key, 0) + 1
        agg.latency.setdefault(pair, []).append(o.latency_ms)
        if o.stream and o.ttft_ms is not None:
            agg.ttft.setdefault(pair, []).append(o.ttft_ms)
        if o.cost_usd > 0:
            agg.cost[pair] = agg.cost.get(pair, 0.0) + o.cost_usd
        if o.usage.prompt_tokens > 0:
            agg.tokens_in[pair] = agg.tokens_in.get(pair, 0) + o.usage.prompt_tokens
        if o.usage.completion_tokens > 0:
            agg.tokens_out[pair] = agg.tokens_out.get(pair, 0) + o.usage.completion_tokens
        if o.decision is not None and len(o.decision.attempts) > 1:
            for error_class in failover_classes(o):
                cls = error_class if error_class in _ERROR_CLASSES else OTHER
                agg.failovers[cls] = agg.failovers.get(cls, 0) + 1

    def _apply(self, agg: _BatchTotals) -> None:
        for key, n in agg.requests.items():
            self._child(self._requests, key).inc(n)
        for hist, values_by_pair in ((self._latency, agg.latency), (self._ttft, agg.ttft)):
            for pair, values in values_by_pair.items():
                hist.observe_many(pair, values)
        for counter, totals in (
            (self._cost, agg.cost),
            (self._tokens_in, agg.tokens_in),
            (self._tokens_out, agg.tokens_out),
        ):
            for pair, total in totals.items():
                self._child(counter, pair).inc(total)
        for cls, n in agg.failovers.items():
            self._child(self._failovers, (cls,)).inc(n)

    def _child(self, metric: Any, labels: tuple[str, ...]) -> Any:
        # Label values are bounded (see the module docstring), so the cache is too.
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type, for ``GET /metrics``."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # -- labels --------------------------------------------------------------------

    def _pair_label(self, model: str | None, provider: str | None) -> tuple[str, str]:
        return self._model_label(model), self._provider_label(provider)

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


@dataclass(slots=True)
class _BatchTotals:
    """One batch's metric updates, summed per label set before they are applied."""

    requests: dict[tuple[str, ...], int] = field(default_factory=dict)
    latency: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    ttft: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    cost: dict[tuple[str, str], float] = field(default_factory=dict)
    tokens_in: dict[tuple[str, str], int] = field(default_factory=dict)
    tokens_out: dict[tuple[str, str], int] = field(default_factory=dict)
    failovers: dict[str, int] = field(default_factory=dict)


class BatchHistogram(Collector):
    """A labelled Prometheus histogram that takes a batch of values per call.

    Exposes what ``prometheus_client.Histogram`` does (``_bucket`` with cumulative
    ``le`` counts, ``_count``, ``_sum``) without its per-value locking and dispatch:
    a value costs one bisect and one list increment. Bucket bounds are inclusive
    upper bounds, as Prometheus defines them.
    """

    def __init__(self, name: str, doc: str, labels: Sequence[str], bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("histogram bounds must be increasing")
        self.name = name
        self.doc = doc
        self.labels = tuple(labels)
        self.bounds = tuple(float(b) for b in bounds)
        self._les = [floatToGoString(b) for b in self.bounds]  # type: ignore[no-untyped-call]
        # Per label set: counts per bucket (the last one +Inf, not cumulative), then sum.
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        self._lock = threading.Lock()  # scrapes may run in a thread (prometheus_client)

    def observe_many(self, labels: tuple[str, ...], values: Iterable[float]) -> None:
        """Add ``values`` to the series of ``labels`` (one value per label name)."""
        bounds = self.bounds
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                if len(labels) != len(self.labels):
                    raise ValueError(f"{self.name} takes labels {self.labels}")
                series = self._series[labels] = ([0] * (len(bounds) + 1), [0.0])
            counts, total = series
            for v in values:
                counts[bisect_left(bounds, v)] += 1
                total[0] += v

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self.name, self.doc, labels=self.labels)]

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        with self._lock:
            snapshot = [(k, list(c), t[0]) for k, (c, t) in sorted(self._series.items())]
        for labels, counts, total in snapshot:
            cumulative, buckets = 0, []
            for le, n in zip([*self._les, "+Inf"], counts, strict=True):
                cumulative += n
                buckets.append((le, float(cumulative)))
            family.add_metric(list(labels), buckets, total)
        yield family


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
        lost = CounterMetricFamily(
            "tokenhub_recorder_lost",
            "Outcomes a sink could not write after its retries (e.g. request log rows).",
            labels=["sink"],
        )
        for sink, n in sorted(m._lost().items()):
            lost.add_metric([sink], n)
        yield lost
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
        self.metrics.observe_batch(batch)
