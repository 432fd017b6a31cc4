"""RoutingConfig: defaults, round trip, partial merges and validation messages."""

from __future__ import annotations

import json

import pytest

from tokenhub.routing.config import MODES, Profile, RoutingConfig


def test_defaults() -> None:
    """The defaults match the documented values."""
    c = RoutingConfig()
    assert (c.default_mode, c.max_budget_usd, c.max_latency_ms, c.min_weight) == (
        "normal",
        0.05,
        20000,
        0,
    )
    assert (c.max_attempts, c.context_headroom, c.default_output_tokens) == (5, 0.15, 512)
    assert c.transient_backoff_ms == (100.0, 200.0) and c.rate_limit_cooldown_s == 5.0
    assert c.profile("cheap") == Profile(0.7, 0.1, 0.1, 0.1)
    assert c.profile("high_confidence") == Profile(0.05, 0.1, 0.15, 0.7)
    assert set(c.profiles) == set(MODES)


def test_json_round_trip() -> None:
    """to_dict is JSON-ready and from_dict restores an equal config."""
    c = RoutingConfig.from_dict({"max_attempts": 3, "profiles": {"cheap": {"cost": 0.9}}})
    again = RoutingConfig.from_dict(json.loads(json.dumps(c.to_dict())))
    assert again == c and again.max_attempts == 3


def test_partial_update_merges_onto_current() -> None:
    """A partial update keeps every other field, including other profile weights."""
    current = RoutingConfig.from_dict({"max_budget_usd": 1.5})
    new = current.updated({"default_mode": "cheap", "profiles": {"planning": {"failure": 0.5}}})
    assert new.max_budget_usd == 1.5 and new.default_mode == "cheap"
    assert new.profile("planning") == Profile(0.1, 0.1, 0.5, 0.6)
    assert current.default_mode == "normal", "the original is untouched"


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"bogus": 1}, "unknown routing setting 'bogus'"),
        ({"default_mode": "reckless"}, "default_mode: expected one of cheap"),
        ({"max_budget_usd": -1}, "max_budget_usd: expected a number from 0 to 100"),
        ({"max_budget_usd": "cheap"}, "max_budget_usd"),
        ({"max_latency_ms": 0}, "max_latency_ms: expected a whole number from 1"),
        ({"min_weight": 11}, "min_weight"),
        ({"max_attempts": True}, "max_attempts"),
        ({"context_headroom": 0.95}, "context_headroom"),
        ({"transient_backoff_ms": [100, -5]}, r"transient_backoff_ms\[1\]"),
        ({"transient_backoff_ms": 100}, "transient_backoff_ms: expected a list"),
        ({"default_output_tokens": 2.5}, "default_output_tokens"),
        ({"rate_limit_cooldown_s": float("nan")}, "rate_limit_cooldown_s"),
        ({"profiles": {"yolo": {"cost": 1}}}, "profiles: unknown mode 'yolo'"),
        ({"profiles": {"cheap": {"speed": 1}}}, "profiles.cheap: unknown weight 'speed'"),
        ({"profiles": {"cheap": {"cost": -1}}}, "profiles.cheap.cost"),
        (
            {"profiles": {"cheap": {"cost": 0, "latency": 0, "failure": 0, "capability": 0}}},
            "at least one",
        ),
        ({"profiles": []}, "profiles: expected an object"),
    ],
)
def test_bad_values_name_the_field(update: dict[str, object], message: str) -> None:
    """Each invalid update raises ValueError naming the offending field."""
    with pytest.raises(ValueError, match=message):
        RoutingConfig.from_dict(update)


def test_not_an_object() -> None:
    """A non-object body is refused."""
    with pytest.raises(ValueError, match="JSON object"):
        RoutingConfig.from_dict([1, 2])  # type: ignore[arg-type]


def test_whole_floats_accepted_for_integers() -> None:
    """JSON numbers like 3.0 are accepted where a whole number is expected."""
    assert RoutingConfig.from_dict({"max_attempts": 3.0}).max_attempts == 3
