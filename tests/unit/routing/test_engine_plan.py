"""RoutingEngine planning: policy, eligibility, exclusion reasons, hints, simulate."""

from __future__ import annotations

import pytest

from tests.unit.routing.fakes import Rig, chat, make_rig
from tokenhub.errors import BadRequest, NoEligibleModel, ServiceUnavailable
from tokenhub.routing.config import RoutingConfig
from tokenhub.types import ErrorClass, ModelConfig, ProviderConfig

SMALL = ModelConfig(
    "small", "pa", weight=3, max_context_tokens=1000, input_per_1k=0.0005, output_per_1k=0.001
)
MID = ModelConfig(
    "mid", "pb", weight=6, max_context_tokens=16000, input_per_1k=0.003, output_per_1k=0.006
)
BIG = ModelConfig(
    "big", "pc", weight=9, max_context_tokens=128000, input_per_1k=0.01, output_per_1k=0.03
)


@pytest.fixture
async def rig() -> Rig:
    return await make_rig([SMALL, MID, BIG])


def test_policy_fills_gaps_from_config(rig: Rig) -> None:
    """policy() takes the config defaults for every field not given."""
    p = rig.engine.policy()
    assert (p.mode, p.max_budget_usd, p.max_latency_ms, p.min_weight) == ("normal", 0.05, 20000, 0)
    p = rig.engine.policy("cheap", max_budget_usd=1.0, min_weight=4)
    assert (p.mode, p.max_budget_usd, p.min_weight) == ("cheap", 1.0, 4)


def test_unknown_mode_is_a_bad_request(rig: Rig) -> None:
    """An unknown mode raises BadRequest naming it; so does a negative budget."""
    with pytest.raises(BadRequest, match="unknown mode 'turbo'"):
        rig.engine.policy("turbo")
    with pytest.raises(BadRequest, match="max_budget_usd"):
        rig.engine.policy(max_budget_usd=-1.0)


def test_plan_ranks_and_fills_the_decision(rig: Rig) -> None:
    """The decision names the winner, its reason, cost, tokens, mode and the ranking."""
    d = rig.engine.plan(chat("hello there"), rig.engine.policy("cheap"))
    assert d.model is SMALL and d.provider_id == "pa" and d.reason == "routed-weight-3"
    assert [mid for mid, _ in d.ranked] == ["small", "mid", "big"]
    assert d.estimated_tokens == 2 + 4 + 3 and d.mode == "cheap"
    assert d.estimated_cost_usd == pytest.approx((9 * 0.0005 + 512 * 0.001) / 1000)
    assert d.excluded == {} and d.attempts == []


def test_modes_change_the_winner(rig: Rig) -> None:
    """Equal latencies: normal picks the mid model, high_confidence the heaviest."""
    assert rig.engine.plan(chat(), rig.engine.policy("normal")).model is MID
    d = rig.engine.plan(chat(), rig.engine.policy("high_confidence"))
    assert d.model is BIG and d.reason == "routed-weight-9"


def test_min_weight_excludes(rig: Rig) -> None:
    """Models below min_weight are excluded with the reason."""
    d = rig.engine.plan(chat(), rig.engine.policy(min_weight=5))
    assert d.excluded == {"small": "weight 3 below min_weight 5"}
    assert d.model is MID


def test_context_fit_uses_headroom_and_max_tokens(rig: Rig) -> None:
    """Input estimate + max_tokens must fit the context minus 15% headroom."""
    req = chat(estimated_input_tokens=800, max_tokens=100)  # 900 > 1000 * 0.85
    d = rig.engine.plan(req, rig.engine.policy())
    assert d.excluded["small"] == "context: needs 900 tokens, 850 usable of 1000"
    ok = chat(estimated_input_tokens=800, max_tokens=50)
    assert "small" not in rig.engine.plan(ok, rig.engine.policy()).excluded


def test_unavailable_provider_is_excluded_with_seconds_left(rig: Rig) -> None:
    """A down or rate-limited provider's models are excluded, saying how long is left."""
    for _ in range(5):
        rig.health.record_failure("pa", ErrorClass.TRANSIENT, "boom")
    rig.health.cool_down("pb", 12.0, "rate limited (429)")
    d = rig.engine.plan(chat(), rig.engine.policy())
    assert d.excluded["small"] == "provider pa unavailable (circuit open), 30.0s left"
    assert d.excluded["mid"] == "provider pb unavailable (rate limited (429)), 12.0s left"
    assert d.model is BIG
    rig.clock.advance(30.0)
    assert set(rig.engine.plan(chat(), rig.engine.policy()).excluded) == set()


def test_budget_excludes_expensive_models(rig: Rig) -> None:
    """A model whose estimated cost is over budget is excluded with both amounts."""
    req = chat(estimated_input_tokens=10000, max_tokens=1000)
    d = rig.engine.plan(req, rig.engine.policy(max_budget_usd=0.05))
    # big: (10000 * 0.01 + 1000 * 0.03) / 1000 = 0.13
    assert d.excluded["big"] == "estimated cost $0.130000 over budget $0.050000"
    assert "mid" not in d.excluded


def test_default_output_tokens_price_the_answer(rig: Rig) -> None:
    """Without max_tokens the configured default output size is priced in."""
    rig.engine.config = RoutingConfig.from_dict({"default_output_tokens": 2000})
    d = rig.engine.plan(chat(estimated_input_tokens=0), rig.engine.policy(max_budget_usd=0.05))
    assert d.excluded["big"].startswith("estimated cost $0.060000")


def test_nothing_eligible_raises_with_exclusions(rig: Rig) -> None:
    """No eligible model raises NoEligibleModel whose details list every exclusion."""
    with pytest.raises(NoEligibleModel) as info:
        rig.engine.plan(chat(), rig.engine.policy(min_weight=10))
    assert info.value.details == {
        "excluded": {
            "small": "weight 3 below min_weight 10",
            "mid": "weight 6 below min_weight 10",
            "big": "weight 9 below min_weight 10",
        }
    }


def test_model_hint_goes_first(rig: Rig) -> None:
    """An eligible hinted model leads the ranking with reason model-hint."""
    d = rig.engine.plan(chat(model="big"), rig.engine.policy("cheap"))
    assert d.model is BIG and d.reason == "model-hint"
    assert [mid for mid, _ in d.ranked] == ["big", "small", "mid"]


async def test_model_hint_by_upstream_id() -> None:
    """A hint naming a model's upstream id finds that model."""
    rig = await make_rig([SMALL, ModelConfig("fancy", "pb", upstream_id="vendor/fancy-1")])
    d = rig.engine.plan(chat(model="vendor/fancy-1"), rig.engine.policy())
    assert d.model is not None and d.model.id == "fancy" and d.reason == "model-hint"


def test_unknown_or_ineligible_hint_is_ignored(rig: Rig) -> None:
    """An unknown hint, or a hint excluded by policy, falls back to normal routing."""
    d = rig.engine.plan(chat(model="gpt-99"), rig.engine.policy("cheap"))
    assert d.model is SMALL and d.reason == "routed-weight-3"
    d = rig.engine.plan(chat(model="small"), rig.engine.policy("cheap", min_weight=5))
    assert d.model is MID and d.reason == "routed-weight-6"


async def test_disabled_provider_is_not_routable(rig: Rig) -> None:
    """Models of a disabled provider never appear in the plan."""
    await rig.catalog.set_provider(ProviderConfig(id="pa", type="scripted", enabled=False))
    d = rig.engine.plan(chat(), rig.engine.policy())
    assert "small" not in dict(d.ranked) and "small" not in d.excluded


def test_simulate_reports_winner_eligible_and_excluded(rig: Rig) -> None:
    """simulate() returns the winner, ranked eligible models with costs and exclusions."""
    out = rig.engine.simulate(mode="cheap", token_count=2000, max_tokens=100)
    assert out["winner"] == "mid" and out["reason"] == "routed-weight-6"
    assert [e["model"] for e in out["eligible"]] == ["mid", "big"]
    assert out["excluded"] == {"small": "context: needs 2100 tokens, 850 usable of 1000"}
    first = out["eligible"][0]
    assert first["provider"] == "pb"
    assert first["estimated_cost_usd"] == pytest.approx((2000 * 0.003 + 100 * 0.006) / 1000)
    assert set(first["components"]) == {"cost", "latency", "failure", "capability"}
    assert out["estimated_tokens"] == 2000
    assert out["policy"] == {
        "mode": "cheap",
        "max_budget_usd": 0.05,
        "max_latency_ms": 20000,
        "min_weight": 0,
    }


def test_simulate_with_hint_and_nothing_eligible(rig: Rig) -> None:
    """simulate() honours the hint, and with no eligible model gives winner None."""
    assert rig.engine.simulate(model_hint="big", token_count=10)["reason"] == "model-hint"
    out = rig.engine.simulate(min_weight=10)
    assert out["winner"] is None and out["reason"] is None and out["eligible"] == []
    assert len(out["excluded"]) == 3


def test_describe_models(rig: Rig) -> None:
    """describe_models() lists each routable model with prices and live health."""
    rig.health.record_success("pc", 250.0)
    rig.health.cool_down("pb", 3.0, "rate limited")
    rows = {r["id"]: r for r in rig.engine.describe_models()}
    assert set(rows) == {"small", "mid", "big"}
    assert rows["big"]["expected_latency_ms"] == 250.0 and rows["big"]["health"] == "healthy"
    assert rows["mid"]["available"] is False and rows["mid"]["cooldown_remaining_s"] == 3.0
    assert rows["small"]["max_context_tokens"] == 1000 and rows["small"]["input_per_1k"] == 0.0005


def test_prepare_reports_the_costliest_candidate(rig: Rig) -> None:
    """A plan's max_cost_usd covers every candidate failover might reach."""
    plan = rig.engine.prepare(
        chat("hello there", max_tokens=100), rig.engine.policy(max_budget_usd=10)
    )
    costs = [(9 * m.input_per_1k + 100 * m.output_per_1k) / 1000 for m in (SMALL, MID, BIG)]
    assert plan.max_cost_usd == pytest.approx(max(costs))
    assert plan.decision.model is not None


def test_provider_gate_excludes_and_turns_into_503(rig: Rig) -> None:
    """A gated provider is excluded with the gate's reason; only gates left means 503."""
    rig.engine.provider_gate = lambda pid: "vault locked" if pid != "pa" else None
    d = rig.engine.plan(chat(), rig.engine.policy("high_confidence"))
    assert d.model is SMALL
    assert d.excluded == {"mid": "vault locked", "big": "vault locked"}
    rig.engine.provider_gate = lambda pid: "vault locked"
    with pytest.raises(ServiceUnavailable, match="vault locked") as exc:
        rig.engine.prepare(chat(), rig.engine.policy())
    assert exc.value.status == 503


def test_decision_carries_policy_cooldowns_and_rides_on_errors(rig: Rig) -> None:
    """The decision keeps the policy and cooldowns in force; routing errors carry it."""
    rig.health.cool_down("pa", 30, "rate limited (429)")
    policy = rig.engine.policy("cheap")
    d = rig.engine.plan(chat(), policy)
    assert d.policy == policy
    assert d.cooldowns == [{"provider": "pa", "reason": "rate limited (429)", "remaining_s": 30.0}]
    with pytest.raises(NoEligibleModel) as exc:
        rig.engine.prepare(chat(), rig.engine.policy(min_weight=10))
    assert exc.value.decision is not None and set(exc.value.decision.excluded) == {
        "small",
        "mid",
        "big",
    }
