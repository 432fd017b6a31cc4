"""Scoring: the formula, each profile's order, tie-breaks and expected latency."""

from __future__ import annotations

import pytest

from tests.unit.routing.fakes import FakeClock
from tokenhub.observe.health import HealthTracker
from tokenhub.routing.config import Profile, RoutingConfig
from tokenhub.routing.scoring import estimate_cost, expected_latency_ms, score
from tokenhub.types import ErrorClass, ModelConfig

CHEAP = ModelConfig(
    "small", "pa", weight=3, input_per_1k=0.001, output_per_1k=0.002, labels={"latency_ms": 500}
)
MID = ModelConfig(
    "mid", "pb", weight=6, input_per_1k=0.01, output_per_1k=0.02, labels={"latency_ms": 1000}
)
BIG = ModelConfig(
    "big", "pc", weight=9, input_per_1k=0.03, output_per_1k=0.06, labels={"latency_ms": 2000}
)
MODELS = [MID, BIG, CHEAP]


@pytest.fixture
def health() -> HealthTracker:
    h = HealthTracker(clock=FakeClock())
    # pb: 2 requests, 1 error -> error rate 0.5, latency untouched.
    h.record_failure("pb", ErrorClass.FATAL, "x")
    h.record_failure("pb", ErrorClass.CONTEXT_OVERFLOW, "y")
    return h


def rank(mode: str, health: HealthTracker) -> list[str]:
    ranked = score(
        MODELS,
        input_tokens=1000,
        output_tokens=500,
        profile=RoutingConfig().profile(mode),
        health=health,
    )
    return [r.model.id for r in ranked]


def test_normal_scores_match_the_hand_computation(health: HealthTracker) -> None:
    """normal = 0.25 * (cost_norm + latency_norm + failure - weight/10), computed by hand."""
    ranked = score(
        MODELS,
        input_tokens=1000,
        output_tokens=500,
        profile=RoutingConfig().profile("normal"),
        health=health,
    )
    got = {r.model.id: r.score for r in ranked}
    # costs 0.002 / 0.02 / 0.06 USD; latencies 500 / 1000 / 2000 ms.
    assert got["small"] == pytest.approx(0.25 * (0.002 / 0.06 + 0.25 + 0.0 - 0.3))
    assert got["mid"] == pytest.approx(0.25 * (0.02 / 0.06 + 0.5 + 0.5 - 0.6))
    assert got["big"] == pytest.approx(0.25 * (1.0 + 1.0 + 0.0 - 0.9))
    assert [r.model.id for r in ranked] == ["small", "mid", "big"]
    mid = next(r for r in ranked if r.model.id == "mid")
    assert mid.components == pytest.approx(
        {"cost": 1 / 3, "latency": 0.5, "failure": 0.5, "capability": 0.6}
    )


@pytest.mark.parametrize(
    ("mode", "order"),
    [
        ("cheap", ["small", "mid", "big"]),
        ("normal", ["small", "mid", "big"]),
        ("high_confidence", ["big", "mid", "small"]),
        ("planning", ["big", "mid", "small"]),
        ("adversarial", ["big", "mid", "small"]),
    ],
)
def test_each_profile_orders_the_catalog(
    mode: str, order: list[str], health: HealthTracker
) -> None:
    """Cheap and normal favour the cheap fast model; capability-heavy modes the big one."""
    assert rank(mode, health) == order


def test_cheap_score_value(health: HealthTracker) -> None:
    """cheap weights cost 0.7: the small model scores 0.7/30 + 0.025 - 0.03."""
    ranked = score(
        [CHEAP, BIG],
        input_tokens=1000,
        output_tokens=500,
        profile=RoutingConfig().profile("cheap"),
        health=health,
    )
    assert ranked[0].score == pytest.approx(0.7 * (0.002 / 0.06) + 0.1 * 0.25 - 0.1 * 0.3)


def test_ties_break_by_weight_then_id(health: HealthTracker) -> None:
    """With equal scores the higher weight wins, then the smaller id."""
    flat = Profile(cost=1.0, latency=0.0, failure=0.0, capability=0.0)
    a = ModelConfig("b-model", "pa", weight=5)
    b = ModelConfig("a-model", "pa", weight=5)
    c = ModelConfig("c-model", "pa", weight=8)
    ranked = score([a, b, c], input_tokens=10, output_tokens=10, profile=flat, health=health)
    assert [r.model.id for r in ranked] == ["c-model", "a-model", "b-model"]
    assert all(r.score == 0.0 for r in ranked), "all-free models normalise cost to 0"


def test_expected_latency_prefers_observed(health: HealthTracker) -> None:
    """Observed EMA latency beats the label; the label beats the 1000 ms default."""
    assert expected_latency_ms(CHEAP, health) == 500.0
    assert expected_latency_ms(ModelConfig("x", "pz"), health) == 1000.0
    health.record_success("pa", 42.0)
    assert expected_latency_ms(CHEAP, health) == 42.0


def test_estimate_cost() -> None:
    """Cost is (in * in_price + out * out_price) / 1000."""
    assert estimate_cost(BIG, 1000, 500) == pytest.approx(0.06)


def test_empty_candidates() -> None:
    """Scoring no models gives an empty ranking."""
    h = HealthTracker(clock=FakeClock())
    assert (
        score(
            [], input_tokens=1, output_tokens=1, profile=RoutingConfig().profile("normal"), health=h
        )
        == []
    )
