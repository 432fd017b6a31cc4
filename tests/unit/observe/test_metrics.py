"""Metrics: values after known outcomes, bounded labels, live gauges, own registries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.routing.fakes import FakeClock
from tokenhub.observe.health import HealthTracker
from tokenhub.observe.metrics import LATENCY_BUCKETS_MS, BatchHistogram, Metrics, MetricsSink
from tokenhub.types import Attempt, Decision, ErrorClass, Outcome, Usage

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class FakeCatalog:
    providers: dict[str, Any] = field(default_factory=lambda: {"p1": object(), "p2": object()})
    models: dict[str, Any] = field(default_factory=lambda: {"m1": object(), "m2": object()})


def scrape(m: Metrics) -> Samples:
    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def outcome(**kw: Any) -> Outcome:
    base: dict[str, Any] = {
        "request_id": "r1",
        "surface": "openai",
        "started_at": 1.0,
        "status": 200,
        "latency_ms": 30.0,
        "model": "m1",
        "provider": "p1",
        "usage": Usage(100, 20),
        "cost_usd": 0.25,
    }
    base.update(kw)
    return Outcome(**base)


def test_request_counter_latency_cost_and_tokens_after_one_outcome() -> None:
    """One outcome counts a request and feeds latency, cost and token metrics."""
    m = Metrics(catalog=FakeCatalog())
    m.observe(outcome())
    m.observe(outcome(latency_ms=700.0, cost_usd=0.5, usage=Usage(1, 2)))
    s = scrape(m)
    labels = {"mode": "normal", "model": "m1", "provider": "p1", "status": "200"}
    assert value(s, "tokenhub_requests_total", **labels) == 2
    pair = {"model": "m1", "provider": "p1"}
    assert value(s, "tokenhub_request_latency_ms_count", **pair) == 2
    assert value(s, "tokenhub_request_latency_ms_sum", **pair) == 730.0
    assert value(s, "tokenhub_request_latency_ms_bucket", le="40.0", **pair) == 1
    assert value(s, "tokenhub_request_latency_ms_bucket", le="640.0", **pair) == 1
    assert value(s, "tokenhub_request_latency_ms_bucket", le="1280.0", **pair) == 2
    assert value(s, "tokenhub_cost_usd_total", **pair) == 0.75
    assert value(s, "tokenhub_input_tokens_total", **pair) == 101
    assert value(s, "tokenhub_output_tokens_total", **pair) == 22


def test_latency_buckets_are_10_to_5120_ms_base_two() -> None:
    """The latency histogram buckets double from 10 ms to 5120 ms."""
    assert LATENCY_BUCKETS_MS == (10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120)
    m = Metrics()
    m.observe(outcome(latency_ms=9000.0))
    les = {dict(k[1])["le"] for k in scrape(m) if k[0] == "tokenhub_request_latency_ms_bucket"}
    assert les == {str(b) for b in LATENCY_BUCKETS_MS} | {"+Inf"}


def test_time_to_first_token_only_for_streams() -> None:
    """TTFT is observed for streamed requests and ignored for whole answers."""
    m = Metrics()
    m.observe(outcome(stream=True, ttft_ms=15.0))
    m.observe(outcome(stream=False, ttft_ms=99.0))
    s = scrape(m)
    pair = {"model": "m1", "provider": "p1"}
    assert value(s, "tokenhub_time_to_first_token_ms_count", **pair) == 1
    assert value(s, "tokenhub_time_to_first_token_ms_sum", **pair) == 15.0


def test_failovers_counted_by_error_class_for_attempts_moved_on_from() -> None:
    """Each failed attempt followed by another counts one failover of its error class."""
    attempts = [
        Attempt("m1", "p1", error_class=ErrorClass.TRANSIENT, status=503),
        Attempt("m2", "p2", error_class=ErrorClass.RATE_LIMITED, status=429),
        Attempt("m1", "p1", error_class=ErrorClass.FATAL, status=400),
    ]
    m = Metrics()
    m.observe(outcome(status=502, decision=Decision(attempts=attempts)))
    s = scrape(m)
    assert value(s, "tokenhub_failovers_total", error_class="transient") == 1
    assert value(s, "tokenhub_failovers_total", error_class="rate_limited") == 1
    assert value(s, "tokenhub_failovers_total", error_class="fatal") is None


def test_labels_come_only_from_registered_ids_and_known_modes() -> None:
    """Unregistered model/provider ids become "other", missing ones "none"; modes are bounded."""
    m = Metrics(catalog=FakeCatalog())
    m.observe(outcome(model="client-typed-junk", provider="nope", mode="made-up"))
    m.observe(outcome(model=None, provider=None, status=400))
    s = scrape(m)
    other = {"mode": "other", "model": "other", "provider": "other", "status": "200"}
    assert value(s, "tokenhub_requests_total", **other) == 1
    none = {"mode": "normal", "model": "none", "provider": "none", "status": "400"}
    assert value(s, "tokenhub_requests_total", **none) == 1
    text = m.render()[0].decode()
    assert "client-typed-junk" not in text and "made-up" not in text


def test_error_messages_never_reach_the_metrics() -> None:
    """An outcome's error text (which could quote anything) is not a label anywhere."""
    m = Metrics()
    m.observe(outcome(status=502, error="upstream said sk-live-SECRET", error_class="transient"))
    assert "SECRET" not in m.render()[0].decode()


def test_in_flight_gauge_follows_inc_and_dec() -> None:
    """Requests in flight is read live at scrape time."""
    m = Metrics()
    m.in_flight_inc()
    m.in_flight_inc()
    m.in_flight_dec()
    assert value(scrape(m), "tokenhub_requests_in_flight") == 1
    assert m.in_flight == 1


def test_recorder_and_vault_values_are_read_at_scrape_time() -> None:
    """Bound callables for queue depth, dropped records and vault lock are read per scrape."""
    m = Metrics()
    live = {"depth": 3, "dropped": 7, "locked": True}
    lost = {"logs": 4, "tsdb": 0}
    m.bind_recorder(lambda: int(live["depth"]), lambda: int(live["dropped"]), lambda: lost)
    m.bind_vault(lambda: bool(live["locked"]))
    s = scrape(m)
    assert value(s, "tokenhub_recorder_queue_depth") == 3
    assert value(s, "tokenhub_recorder_dropped_total") == 7
    assert value(s, "tokenhub_recorder_lost_total", sink="logs") == 4
    assert value(s, "tokenhub_recorder_lost_total", sink="tsdb") == 0
    assert value(s, "tokenhub_vault_locked") == 1
    live.update(depth=0, locked=False)
    s = scrape(m)
    assert value(s, "tokenhub_recorder_queue_depth") == 0
    assert value(s, "tokenhub_vault_locked") == 0


def test_unbound_live_values_read_zero() -> None:
    """Before the recorder and vault are bound their gauges read zero."""
    s = scrape(Metrics())
    assert value(s, "tokenhub_recorder_queue_depth") == 0
    assert value(s, "tokenhub_recorder_dropped_total") == 0
    assert value(s, "tokenhub_vault_locked") == 0


def test_provider_health_gauge_reads_the_tracker_per_registered_provider() -> None:
    """Health gauge: 0 healthy, 1 degraded, 2 down; endpoint keys are not exported."""
    clock = FakeClock()
    tracker = HealthTracker(clock=clock, degraded_after=2, down_after=3)
    catalog = FakeCatalog(providers={"ok": 1, "deg": 1, "dead": 1})
    m = Metrics(catalog=catalog, health=tracker)
    for _ in range(2):
        tracker.record_failure("deg", ErrorClass.TRANSIENT, "x")
    for _ in range(3):
        tracker.record_failure("dead", ErrorClass.TRANSIENT, "x")
    tracker.record_failure("dead@http://127.0.0.1:1", ErrorClass.TRANSIENT, "x")
    s = scrape(m)
    assert value(s, "tokenhub_provider_health_state", provider="ok") == 0
    assert value(s, "tokenhub_provider_health_state", provider="deg") == 1
    assert value(s, "tokenhub_provider_health_state", provider="dead") == 2
    assert "127.0.0.1" not in m.render()[0].decode()
    tracker.record_success("dead", 5.0)
    assert value(scrape(m), "tokenhub_provider_health_state", provider="dead") == 0


def test_each_metrics_instance_has_its_own_registry() -> None:
    """Two apps in one process do not share metric values."""
    a, b = Metrics(), Metrics()
    a.observe(outcome())
    assert value(scrape(a), "tokenhub_cost_usd_total", model="m1", provider="p1") == 0.25
    assert value(scrape(b), "tokenhub_cost_usd_total", model="m1", provider="p1") is None


async def test_metrics_sink_observes_every_outcome_of_a_batch() -> None:
    """The recorder's metrics sink counts each outcome of the batch it is given."""
    m = Metrics()
    sink = MetricsSink(m)
    await sink.write([outcome(), outcome(status=502), outcome()])
    s = scrape(m)
    ok = {"mode": "normal", "model": "m1", "provider": "p1", "status": "200"}
    bad = {**ok, "status": "502"}
    assert sink.name == "metrics"
    assert value(s, "tokenhub_requests_total", **ok) == 2
    assert value(s, "tokenhub_requests_total", **bad) == 1


def test_a_batch_counts_the_same_as_outcomes_one_by_one() -> None:
    """observe_batch (summed counters, cached children) matches per-outcome observe exactly."""
    failed = Decision(
        attempts=[Attempt("m1", "p1", error_class=ErrorClass.TRANSIENT), Attempt("m2", "p2")]
    )
    batch = [
        outcome(),
        outcome(status=502, model="junk", provider=None),
        outcome(stream=True, ttft_ms=12.0, usage=Usage(3, 0), cost_usd=0.0),
        outcome(latency_ms=900.0, decision=failed, model="m2", provider="p2"),
        outcome(mode="made-up", status=42),
    ] * 3
    one_by_one, batched = Metrics(catalog=FakeCatalog()), Metrics(catalog=FakeCatalog())
    for o in batch:
        one_by_one.observe(o)
    batched.observe_batch(batch[:7])
    batched.observe_batch(batch[7:])
    s = scrape(batched)
    assert _values(s) == _values(scrape(one_by_one))
    assert value(s, "tokenhub_failovers_total", error_class="transient") == 3
    other = {"mode": "other", "model": "m1", "provider": "p1", "status": "other"}
    assert value(s, "tokenhub_requests_total", **other) == 3


def _values(samples: Samples) -> Samples:
    """Samples without the ``_created`` timestamps, which differ between registries."""
    return {k: v for k, v in samples.items() if not k[0].endswith("_created")}


def test_batch_histogram_exposes_what_a_prometheus_histogram_does() -> None:
    """Same values, same series: bucket edges inclusive (a value on a bound counts in
    that bucket), +Inf, _count and _sum, per label set."""
    values = [0.5, 10.0, 10.000001, 39.9, 40.0, 640.0, 5120.0, 5120.5, 99_999.0]
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    hist = BatchHistogram("h_ms", "doc", ("model",), LATENCY_BUCKETS_MS)
    ours.register(hist)
    reference = Histogram("h_ms", "doc", ("model",), buckets=LATENCY_BUCKETS_MS, registry=theirs)
    hist.observe_many(("a",), values[:4])
    hist.observe_many(("a",), values[4:])
    hist.observe_many(("b",), [7.0])
    for v in values:
        reference.labels("a").observe(v)
    reference.labels("b").observe(7.0)

    def samples(r: CollectorRegistry) -> Samples:
        out: Samples = {}
        for family in text_string_to_metric_families(generate_latest(r).decode()):
            for s in family.samples:
                if not s.name.endswith("_created"):
                    out[(s.name, frozenset(s.labels.items()))] = s.value
        return out

    got = samples(ours)
    assert got == samples(theirs)
    assert value(got, "h_ms_bucket", model="a", le="10.0") == 2
    assert value(got, "h_ms_bucket", model="a", le="+Inf") == len(values)


def test_batch_histogram_refuses_bad_bounds_and_label_counts() -> None:
    with pytest.raises(ValueError, match="increasing"):
        BatchHistogram("h", "doc", ("model",), (20.0, 10.0))
    hist = BatchHistogram("h", "doc", ("model", "provider"), (1.0,))
    with pytest.raises(ValueError, match="takes labels"):
        hist.observe_many(("only-one",), [1.0])
