"""The Thompson-sampling bandit, its recorder sink, and thompson mode in the engine."""

from __future__ import annotations

import random

import pytest

from tests.unit.routing.fakes import FakeClock
from tokenhub.config import load_settings
from tokenhub.observe.banditsink import BanditSink
from tokenhub.observe.health import HealthTracker
from tokenhub.routing.bandit import ArmState, Bandit
from tokenhub.routing.catalog import Catalog
from tokenhub.routing.config import RoutingConfig
from tokenhub.routing.engine import RoutingEngine
from tokenhub.types import (
    Attempt,
    ChatRequest,
    Decision,
    ErrorClass,
    Message,
    ModelConfig,
    Outcome,
    Policy,
    ProviderConfig,
)

HOUR = 3600.0


def _model(mid: str) -> ModelConfig:
    return ModelConfig(id=mid, provider_id="p", max_context_tokens=100_000)


def _bandit(clock: FakeClock, seed: int = 1, **kw: float) -> Bandit:
    # Unit weights keep the arithmetic of these tests readable.
    weights = {"reward_weight": 1.0, "feedback_weight": 2.0, **kw}
    return Bandit(half_life_s=HOUR, clock=clock, rng=random.Random(seed), **weights)


def test_update_adds_fractional_reward_to_alpha_and_the_rest_to_beta() -> None:
    """A reward r adds r to alpha and 1 - r to beta, and counts one pull."""
    b = _bandit(FakeClock())
    b.update("m", "small", 0.75)
    (arm,) = b.summary()
    assert (arm["alpha"], arm["beta"], arm["pulls"]) == (1.75, 1.25, 1)
    assert arm["mean"] == pytest.approx(1.75 / 3.0)


def test_evidence_decays_halfway_to_the_prior_after_one_half_life() -> None:
    """After one half-life the evidence beyond the prior counts half."""
    clock = FakeClock()
    b = _bandit(clock)
    for _ in range(10):
        b.update("m", "small", 1.0)
    clock.advance(HOUR)
    (arm,) = b.summary()
    assert arm["alpha"] == pytest.approx(6.0) and arm["beta"] == pytest.approx(1.0)


def test_a_late_observation_is_discounted_by_its_age() -> None:
    """An observation older than the arm's last update counts as much as it has faded."""
    clock = FakeClock(10 * HOUR)
    b = _bandit(clock)
    b.update("m", "small", 0.0)
    b.update("m", "small", 1.0, at=clock.now - HOUR)
    (arm,) = b.summary()
    assert arm["alpha"] == pytest.approx(1.5) and arm["beta"] == pytest.approx(2.0)


def test_feedback_weighs_as_feedback_weight_observations_and_is_not_a_pull() -> None:
    """A client's score counts feedback_weight observations and no pull."""
    b = _bandit(FakeClock())
    b.feedback("m", "large", 0.0)
    (arm,) = b.summary()
    assert (arm["alpha"], arm["beta"], arm["pulls"]) == (1.0, 3.0, 0)


def test_rewards_out_of_range_are_clamped() -> None:
    """Rewards below 0, above 1 or not finite never corrupt an arm."""
    b = _bandit(FakeClock())
    b.update("m", "small", 7.0)
    b.update("m", "small", -3.0)
    b.update("m", "small", float("nan"))
    (arm,) = b.summary()
    assert (arm["alpha"], arm["beta"]) == (2.0, 3.0)


def test_order_prefers_the_arm_with_more_reward() -> None:
    """With clear evidence the better model is sampled first almost always."""
    b = _bandit(FakeClock())
    for _ in range(50):
        b.update("good", "small", 0.95)
        b.update("bad", "small", 0.1)
    firsts = [b.order([_model("bad"), _model("good")], "small")[0][0].id for _ in range(200)]
    assert firsts.count("good") >= 195


def test_unknown_arms_sample_the_prior_and_still_get_explored() -> None:
    """A model never seen samples from the uniform prior, so it sometimes goes first."""
    b = _bandit(FakeClock())
    for _ in range(3):
        b.update("known", "small", 0.6)
    firsts = [b.order([_model("known"), _model("new")], "small")[0][0].id for _ in range(300)]
    assert 30 < firsts.count("new") < 270


def test_order_returns_samples_highest_first() -> None:
    """Every eligible model appears once, with its sample, in descending order."""
    b = _bandit(FakeClock())
    drawn = b.order([_model(m) for m in ("a", "b", "c")], "medium")
    samples = [s for _, s in drawn]
    assert sorted(m.id for m, _ in drawn) == ["a", "b", "c"]
    assert samples == sorted(samples, reverse=True) and all(0 <= s <= 1 for s in samples)


def test_snapshot_and_restore_round_trip() -> None:
    """restore(snapshot()) rebuilds identical arms in a fresh bandit."""
    clock = FakeClock()
    a = _bandit(clock)
    a.update("m", "small", 0.5)
    a.feedback("n", "large", 1.0)
    b = _bandit(clock)
    b.restore(a.snapshot())
    assert b.summary() == a.summary()
    b.restore([ArmState("x", "small", 0.0, 1.0)])  # invalid posteriors are dropped
    assert b.summary() == []


def test_default_weights_count_feedback_twice_an_attempt() -> None:
    """By default an attempt counts 8 observations and a client judgement 16."""
    b = Bandit(clock=FakeClock())
    b.update("m", "small", 1.0)
    b.feedback("m", "small", 0.0)
    (arm,) = b.summary()
    assert (arm["alpha"], arm["beta"]) == (9.0, 17.0)


def test_bad_parameters_are_refused() -> None:
    """A non-positive half-life, prior or weight is a ValueError."""
    with pytest.raises(ValueError):
        Bandit(half_life_s=0)
    with pytest.raises(ValueError):
        Bandit(prior=(0.0, 1.0))
    with pytest.raises(ValueError):
        Bandit(reward_weight=-1)


def _outcome(status: int, attempts: list[Attempt], tokens: int = 200) -> Outcome:
    policy = Policy(max_budget_usd=0.01, max_latency_ms=1000)
    d = Decision(estimated_tokens=tokens, attempts=attempts, policy=policy)
    return Outcome("r", "openai", 0.0, status, 100.0, cost_usd=0.0, decision=d)


async def test_sink_updates_every_attempt_with_the_logged_reward() -> None:
    """A failed attempt teaches reward 0, the answering one the blended reward."""
    b = _bandit(FakeClock())
    failed = Attempt("m1", "p", error_class=ErrorClass.TRANSIENT, latency_ms=50.0)
    answered = Attempt("m2", "p", latency_ms=500.0)
    await BanditSink(b).write([_outcome(200, [failed, answered], tokens=5_000)])
    arms = {(a["model"], a["bucket"]): a for a in b.summary()}
    assert arms[("m1", "medium")]["beta"] == 2.0
    # free answer at half the latency budget: 0.4 + 0.3 + 0.3 * 0.5
    assert arms[("m2", "medium")]["alpha"] == pytest.approx(1.85)


def test_update_many_equals_updates_one_by_one() -> None:
    """A batch of rewards for one arm lands where the same updates one at a time do,
    including on an arm that has decayed since its last update; pulls count each."""
    clock = FakeClock()
    one, many = _bandit(clock), _bandit(clock)
    for b in (one, many):
        b.update("m", "small", 0.9)
    clock.advance(HOUR)
    rewards = [0.2, 1.0, 0.55, 1.7, -1.0]  # out-of-range values are clamped in both
    for r in rewards:
        one.update("m", "small", r)
    many.update_many("m", "small", rewards)
    many.update_many("m", "small", [])  # nothing to fold in: no arm is touched
    [a], [b] = one.summary(), many.summary()
    assert b["alpha"] == pytest.approx(a["alpha"]) and b["beta"] == pytest.approx(a["beta"])
    assert a["pulls"] == b["pulls"] == 6


async def test_sink_batch_teaches_what_outcomes_one_by_one_do() -> None:
    """The sink folds a batch per arm; the arms match observing each outcome alone."""
    clock = FakeClock()
    batched, single = _bandit(clock), _bandit(clock)
    fail = Attempt("m1", "p", error_class=ErrorClass.TRANSIENT, latency_ms=50.0)
    batch = [
        _outcome(200, [Attempt("m1", "p", latency_ms=100.0 * i)], tokens=100 * i)
        for i in range(1, 30)
    ] + [_outcome(200, [fail, Attempt("m2", "p", latency_ms=300.0)])] * 3
    await BanditSink(batched).write(batch)
    for o in batch:
        BanditSink(single).observe(o)
    got = {(a["model"], a["bucket"]): a for a in batched.summary()}
    want = {(a["model"], a["bucket"]): a for a in single.summary()}
    assert got.keys() == want.keys() == {("m1", "small"), ("m1", "medium"), ("m2", "small")}
    for arm, a in want.items():
        assert got[arm]["alpha"] == pytest.approx(a["alpha"]), arm
        assert got[arm]["beta"] == pytest.approx(a["beta"]), arm
        assert got[arm]["pulls"] == a["pulls"], arm


async def test_sink_ignores_outcomes_without_attempts() -> None:
    """A request refused before routing teaches the bandit nothing."""
    b = _bandit(FakeClock())
    sink = BanditSink(b)
    await sink.write([Outcome("r", "openai", 0.0, 401, 1.0)])
    assert sink.observe(_outcome(200, [])) == 0 and b.summary() == []


async def test_engine_in_thompson_mode_ranks_by_sampled_values() -> None:
    """Thompson mode orders eligible models by bandit samples and shows them as scores."""
    catalog = Catalog(lambda cfg: None)  # type: ignore[arg-type,return-value]
    await catalog.set_provider(ProviderConfig(id="p", type="mock"))
    for mid, ctx in (("good", 100_000), ("bad", 100_000), ("tiny", 1000)):
        catalog.set_model(ModelConfig(id=mid, provider_id="p", max_context_tokens=ctx))
    engine = RoutingEngine(catalog, HealthTracker(), RoutingConfig())
    engine.bandit = _bandit(FakeClock())
    for _ in range(100):
        engine.bandit.update("good", "small", 1.0)
        engine.bandit.update("bad", "small", 0.0)
    req = ChatRequest(messages=[Message("user", "hi")], max_tokens=900)
    decision = engine.plan(req, engine.policy("thompson"))
    assert [m for m, _ in decision.ranked] == ["good", "bad"]
    assert "tiny" in decision.excluded  # eligibility filters still apply
    assert decision.mode == "thompson" and decision.model is not None
    assert decision.model.id == "good"
    scores = [s for _, s in decision.ranked]
    assert scores == sorted(scores, reverse=True)


async def test_thompson_without_a_bandit_routes_like_normal() -> None:
    """With no bandit attached, thompson mode falls back to the normal profile's ranking."""
    catalog = Catalog(lambda cfg: None)  # type: ignore[arg-type,return-value]
    await catalog.set_provider(ProviderConfig(id="p", type="mock"))
    for mid, w in (("a", 3), ("b", 9)):
        catalog.set_model(ModelConfig(id=mid, provider_id="p", weight=w))
    engine = RoutingEngine(catalog, HealthTracker(), RoutingConfig())
    req = ChatRequest(messages=[Message("user", "hi")])
    t = engine.plan(req, engine.policy("thompson"))
    n = engine.plan(req, engine.policy("normal"))
    assert t.ranked == n.ranked


def test_thompson_is_an_accepted_default_mode() -> None:
    """TOKENHUB_DEFAULT_MODE and the routing config both accept thompson."""
    assert load_settings({"TOKENHUB_DEFAULT_MODE": "thompson"}).default_mode == "thompson"
    assert RoutingConfig.from_dict({"default_mode": "thompson"}).default_mode == "thompson"
