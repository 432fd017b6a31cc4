"""Scoring: order eligible models by a mode's profile (lower score is better).

    score = cost_norm * w_cost + latency_norm * w_latency + failure_norm * w_failure
            - (weight / 10) * w_capability

``cost_norm`` and ``latency_norm`` are each model's value over the largest among the
candidates (0 when that largest is 0), ``failure_norm`` is its provider's error rate.
Ties go to the higher weight, then the smaller id, so the order is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from tokenhub.observe.health import HealthTracker
from tokenhub.routing.config import Profile
from tokenhub.types import ModelConfig

DEFAULT_LATENCY_MS = 1000.0


class Ranked(NamedTuple):
    """One scored candidate: the model, its score and the normalised terms."""

    model: ModelConfig
    score: float
    components: dict[str, float]


def estimate_cost(model: ModelConfig, input_tokens: int, output_tokens: int) -> float:
    """USD for ``input_tokens`` in and ``output_tokens`` out at the model's prices."""
    return (input_tokens * model.input_per_1k + output_tokens * model.output_per_1k) / 1000.0


def expected_latency_ms(model: ModelConfig, health: HealthTracker) -> float:
    """The provider's observed latency average, else the model's ``latency_ms`` label."""
    observed = health.latency_ms(model.provider_id)
    if observed is not None:
        return observed
    try:
        return float(model.labels.get("latency_ms", DEFAULT_LATENCY_MS))
    except (TypeError, ValueError):  # a malformed label must not break routing
        return DEFAULT_LATENCY_MS


def score(
    models: Sequence[ModelConfig],
    *,
    input_tokens: int,
    output_tokens: int,
    profile: Profile,
    health: HealthTracker,
) -> list[Ranked]:
    """Score and rank ``models`` (best first) for a request of the given size."""
    costs = [estimate_cost(m, input_tokens, output_tokens) for m in models]
    latencies = [expected_latency_ms(m, health) for m in models]
    max_cost = max(costs, default=0.0)
    max_latency = max(latencies, default=0.0)
    ranked = []
    for model, cost, latency in zip(models, costs, latencies, strict=True):
        terms = {
            "cost": cost / max_cost if max_cost > 0 else 0.0,
            "latency": latency / max_latency if max_latency > 0 else 0.0,
            "failure": health.error_rate(model.provider_id),
            "capability": model.weight / 10.0,
        }
        ranked.append(Ranked(model, _combine(terms, profile), terms))
    # Rounding keeps float noise from deciding between equally scored models.
    ranked.sort(key=lambda r: (round(r.score, 9), -r.model.weight, r.model.id))
    return ranked


def _combine(terms: dict[str, float], p: Profile) -> float:
    return (
        terms["cost"] * p.cost
        + terms["latency"] * p.latency
        + terms["failure"] * p.failure
        - terms["capability"] * p.capability
    )
