"""HealthTracker: state machine, cooldowns, half-open trials, statistics."""

from __future__ import annotations

import json

import pytest

from tests.unit.routing.fakes import FakeClock
from tokenhub.observe.health import HealthTracker
from tokenhub.types import ErrorClass


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tracker(clock: FakeClock) -> HealthTracker:
    return HealthTracker(clock=clock, cooldown_s=30.0)


def fail(
    t: HealthTracker, key: str = "p", n: int = 1, cls: ErrorClass = ErrorClass.TRANSIENT
) -> None:
    for _ in range(n):
        t.record_failure(key, cls, "boom", latency_ms=5.0)


def test_unknown_key_is_healthy_and_available(tracker: HealthTracker) -> None:
    """A key never seen is healthy, available and has no cooldown."""
    h = tracker.state("nobody")
    assert (h.state, h.available, h.requests, h.error_rate) == ("healthy", True, 0, 0.0)
    assert tracker.is_available("nobody") and tracker.cooldown_remaining("nobody") == 0.0


def test_two_consecutive_errors_degrade(tracker: HealthTracker) -> None:
    """One error keeps the key healthy; the second in a row makes it degraded but usable."""
    fail(tracker)
    assert tracker.state("p").state == "healthy"
    fail(tracker)
    assert tracker.state("p").state == "degraded"
    assert tracker.is_available("p")


def test_success_resets_the_streak(tracker: HealthTracker) -> None:
    """A success between errors returns the key to healthy and restarts the count."""
    fail(tracker, n=4)
    tracker.record_success("p", 10.0)
    fail(tracker, n=4)
    h = tracker.state("p")
    assert h.state == "degraded" and h.consecutive_errors == 4 and h.available


def test_five_errors_take_the_key_down_for_the_cooldown(
    tracker: HealthTracker, clock: FakeClock
) -> None:
    """Five consecutive errors: down and unavailable until cooldown_s has passed."""
    fail(tracker, n=5)
    h = tracker.state("p")
    assert h.state == "down" and not h.available
    assert h.cooldown_until == pytest.approx(clock.now + 30.0)
    clock.advance(29.0)
    assert not tracker.is_available("p")
    assert tracker.cooldown_remaining("p") == pytest.approx(1.0)


def test_half_open_success_returns_to_healthy(tracker: HealthTracker, clock: FakeClock) -> None:
    """After the cooldown one trial is let through; its success makes the key healthy."""
    fail(tracker, n=5)
    clock.advance(30.0)
    assert tracker.state("p").state == "half_open"
    assert tracker.is_available("p")
    assert tracker.acquire("p")
    assert not tracker.is_available("p"), "only one trial while it is in flight"
    assert not tracker.acquire("p")
    tracker.record_success("p", 12.0)
    h = tracker.state("p")
    assert (h.state, h.available, h.consecutive_errors) == ("healthy", True, 0)


def test_half_open_failure_restarts_the_cooldown(tracker: HealthTracker, clock: FakeClock) -> None:
    """A failed trial sends the key back down for a full cooldown."""
    fail(tracker, n=5)
    clock.advance(31.0)
    assert tracker.acquire("p")
    fail(tracker)
    h = tracker.state("p")
    assert h.state == "down" and not h.available
    assert tracker.cooldown_remaining("p") == pytest.approx(30.0)
    clock.advance(30.0)
    assert tracker.acquire("p")


def test_unreported_trial_expires(tracker: HealthTracker, clock: FakeClock) -> None:
    """A trial that never reports back frees the key after another cooldown."""
    fail(tracker, n=5)
    clock.advance(30.0)
    assert tracker.acquire("p")
    clock.advance(29.0)
    assert not tracker.is_available("p")
    clock.advance(1.0)
    assert tracker.is_available("p")


def test_acquire_on_a_healthy_key_claims_nothing(tracker: HealthTracker) -> None:
    """Outside half-open, acquire is a pure check: many requests may go at once."""
    assert tracker.acquire("p") and tracker.acquire("p") and tracker.is_available("p")


def test_cool_down_blocks_whatever_the_state(tracker: HealthTracker, clock: FakeClock) -> None:
    """A Retry-After cooldown makes a healthy key unavailable until it runs out."""
    tracker.record_success("p", 10.0)
    tracker.cool_down("p", 7.0, "rate limited (429)")
    h = tracker.state("p")
    assert h.state == "healthy" and not h.available
    assert h.cooldown_reason == "rate limited (429)"
    assert tracker.cooldown_remaining("p") == pytest.approx(7.0)
    tracker.cool_down("p", 2.0, "shorter")
    assert tracker.cooldown_remaining("p") == pytest.approx(7.0), (
        "a shorter cooldown never shortens"
    )
    clock.advance(7.0)
    assert tracker.is_available("p") and tracker.state("p").cooldown_until is None


def test_success_does_not_lift_a_rate_limit(tracker: HealthTracker) -> None:
    """A late success from an earlier request leaves the 429 cooldown in place."""
    tracker.cool_down("p", 5.0, "rate limited")
    tracker.record_success("p", 10.0)
    assert not tracker.is_available("p")


def test_rate_limit_and_overflow_do_not_trip_the_breaker(tracker: HealthTracker) -> None:
    """Rate limits count as errors but not in the streak; overflows are not errors at all."""
    fail(tracker, n=6, cls=ErrorClass.RATE_LIMITED)
    fail(tracker, n=6, cls=ErrorClass.CONTEXT_OVERFLOW)
    h = tracker.state("p")
    assert h.state == "healthy" and h.available
    assert (h.requests, h.errors) == (12, 6)
    assert h.error_rate == pytest.approx(0.5)
    assert h.last_error_class == "context_overflow"


def test_latency_ema_and_error_rate(tracker: HealthTracker, clock: FakeClock) -> None:
    """The EMA starts at the first latency and moves by alpha; error rate is errors/requests."""
    tracker.record_success("p", 100.0)
    tracker.record_success("p", 200.0)
    fail(tracker, cls=ErrorClass.FATAL)
    h = tracker.state("p")
    assert h.latency_ema_ms == pytest.approx(120.0)  # 100 + 0.2 * (200 - 100)
    assert h.error_rate == pytest.approx(1 / 3)
    assert h.last_error == "boom" and h.last_error_at == clock.now
    assert h.last_success_at == clock.now


def test_snapshot_is_json_ready_with_ages(tracker: HealthTracker, clock: FakeClock) -> None:
    """snapshot() serialises to JSON and reports ages and remaining cooldown in seconds."""
    tracker.record_success("a", 50.0)
    fail(tracker, "b", n=5)
    clock.advance(4.0)
    snap = json.loads(json.dumps(tracker.snapshot()))
    assert list(snap) == ["a", "b"]
    assert snap["a"]["state"] == "healthy" and snap["a"]["last_success_age_s"] == 4.0
    assert snap["b"]["state"] == "down" and snap["b"]["cooldown_remaining_s"] == 26.0
    assert snap["b"]["last_error_age_s"] == 4.0 and snap["b"]["available"] is False


def test_forget_drops_the_key(tracker: HealthTracker) -> None:
    """forget() erases a key: it is healthy and available again."""
    fail(tracker, "p@http://a", n=5)
    tracker.forget("p@http://a")
    assert tracker.is_available("p@http://a") and tracker.keys() == []


def test_thresholds_are_configurable(clock: FakeClock) -> None:
    """degraded_after and down_after change when the state moves."""
    t = HealthTracker(clock=clock, degraded_after=1, down_after=2, cooldown_s=5.0)
    fail(t)
    assert t.state("p").state == "degraded"
    fail(t)
    assert t.state("p").state == "down" and t.cooldown_remaining("p") == pytest.approx(5.0)


def test_half_open_is_announced_once_per_trip(tracker: HealthTracker, clock: FakeClock) -> None:
    """Down → half-open happens by the clock; listeners hear it when it is first noticed
    (the router's trial claim, or an outcome such as a probe's), once per trip."""
    heard: list[tuple[str, str, str]] = []
    tracker.add_listener(lambda *change: heard.append(change))
    fail(tracker, n=5)
    assert heard == [("p", "healthy", "degraded"), ("p", "degraded", "down")]
    clock.advance(31)
    assert tracker.acquire("p")
    assert not tracker.acquire("p")  # the trial is taken: no second claim, no event
    fail(tracker)  # the trial failed: down again
    assert heard[2:] == [("p", "down", "half_open"), ("p", "half_open", "down")]
    clock.advance(31)
    tracker.record_success("p", 3.0)  # a probe's success, no claim before it
    assert heard[4:] == [("p", "down", "half_open"), ("p", "half_open", "healthy")]
    assert tracker.state("p").state == "healthy"
