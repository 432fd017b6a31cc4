"""RoutingEngine.complete: every failover path, attempts, health feedback."""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.routing.fakes import Rig, chat, err, make_rig
from tokenhub.errors import NoEligibleModel, TooManyRequests, UpstreamFailed
from tokenhub.routing.config import RoutingConfig
from tokenhub.types import ChatRequest, ChatResponse, Decision, ErrorClass, ModelConfig, Target

T, R, C, F = (
    ErrorClass.TRANSIENT,
    ErrorClass.RATE_LIMITED,
    ErrorClass.CONTEXT_OVERFLOW,
    ErrorClass.FATAL,
)


def ladder(*specs: tuple[str, str, int]) -> list[ModelConfig]:
    """Models ranked in the given order under 'cheap' (each costs more than the last)."""
    return [
        ModelConfig(mid, pid, weight=5, max_context_tokens=ctx, input_per_1k=0.0001 * (i + 1))
        for i, (mid, pid, ctx) in enumerate(specs)
    ]


@pytest.fixture
async def rig() -> Rig:
    return await make_rig(
        ladder(("a1", "pa", 8000), ("a2", "pa", 8000), ("b1", "pb", 8000), ("c1", "pc", 32000))
    )


async def run(
    rig: Rig, req: ChatRequest | None = None, **policy: object
) -> tuple[ChatResponse, Decision]:
    return await rig.engine.complete(req or chat(), rig.engine.policy("cheap", **policy))  # type: ignore[arg-type]


async def test_first_try_success(rig: Rig) -> None:
    """A healthy first model answers; the reason is routed-weight and one attempt is kept."""
    rig.adapter("pa").call_latency_s = 0.25
    resp, d = await run(rig)
    assert resp.model == "a1" and d.reason == "routed-weight-5"
    assert [(a.model, a.error_class) for a in d.attempts] == [("a1", None)]
    assert d.attempts[0].latency_ms == pytest.approx(250.0)
    assert rig.health.state("pa").latency_ema_ms == pytest.approx(250.0)


async def test_target_carries_request_id_and_timeout(rig: Rig) -> None:
    """The Target has the request id and min(timeout_s, max_latency_ms / 1000)."""
    await run(rig, max_latency_ms=1500)
    target: Target = rig.adapter("pa").targets[0]
    assert target.request_id == "req-1" and target.timeout_s == 1.5 and target.model.id == "a1"
    await run(rig, max_latency_ms=60000)
    assert rig.adapter("pa").targets[1].timeout_s == 30.0


async def test_transient_retried_on_same_model(rig: Rig) -> None:
    """500, 500, then success on the same model: backoffs 100 then 200 ms, retried-transient."""
    rig.adapter("pa").complete_script["a1"] = [err(T, 500), err(T, 503)]
    resp, d = await run(rig)
    assert resp.model == "a1" and d.reason == "retried-transient"
    assert rig.sleep.delays == [0.1, 0.2]
    assert [(a.status, a.backoff_ms) for a in d.attempts] == [
        (500, 100.0),
        (503, 200.0),
        (None, 0.0),
    ]
    assert rig.health.state("pa").errors == 2 and rig.health.state("pa").state == "healthy"


async def test_transient_exhausted_moves_on(rig: Rig) -> None:
    """Three transient errors on one model: move on to the next, failover-transient."""
    rig.adapter("pa").complete_script["a1"] = [err(T, 502)] * 3
    resp, d = await run(rig)
    assert resp.model == "a2" and d.reason == "failover-transient"
    assert rig.sleep.delays == [0.1, 0.2]
    assert rig.adapter("pa").calls == ["a1", "a1", "a1", "a2"]


async def test_rate_limit_skips_the_provider_and_cools_it_down(rig: Rig) -> None:
    """A 429 with Retry-After cools the provider down and skips all its models."""
    rig.adapter("pa").complete_script["a1"] = [err(R, 429, retry_after=12.0)]
    resp, d = await run(rig)
    assert resp.model == "b1" and d.provider_id == "pb"
    assert d.reason == "failover-rate-limited"
    assert rig.adapter("pa").calls == ["a1"], "a2 shares the cooled provider"
    assert rig.sleep.delays == []
    assert not rig.health.is_available("pa")
    assert rig.health.cooldown_remaining("pa") == pytest.approx(12.0)
    plan = rig.engine.plan(chat(), rig.engine.policy("cheap"))
    assert plan.model is not None and plan.model.id == "b1"
    assert "rate limited" in plan.excluded["a1"]
    rig.clock.advance(12.0)
    assert rig.health.is_available("pa")
    assert rig.engine.plan(chat(), rig.engine.policy("cheap")).model.id == "a1"  # type: ignore[union-attr]


async def test_rate_limit_without_retry_after_uses_config(rig: Rig) -> None:
    """A 429 without Retry-After cools down for rate_limit_cooldown_s."""
    rig.engine.config = RoutingConfig.from_dict({"rate_limit_cooldown_s": 7})
    rig.adapter("pa").complete_script["a1"] = [err(R, 429)]
    await run(rig)
    assert rig.health.cooldown_remaining("pa") == pytest.approx(7.0)


async def test_context_overflow_escalates_to_a_larger_model(rig: Rig) -> None:
    """An overflow skips models no larger than the failed one and tries a larger context."""
    rig.adapter("pa").complete_script["a1"] = [err(C, 400)]
    resp, d = await run(rig)
    assert resp.model == "c1" and d.reason == "escalated-context-overflow"
    assert rig.adapter("pa").calls == ["a1"] and rig.adapter("pb").calls == []
    assert rig.health.state("pa").errors == 0, "an overflow is not the provider's fault"


async def test_fatal_moves_to_the_next_model(rig: Rig) -> None:
    """A fatal error moves straight on to the next model without backoff."""
    rig.adapter("pa").complete_script["a1"] = [err(F, 401)]
    resp, d = await run(rig)
    assert resp.model == "a2" and d.reason == "failover-fatal" and rig.sleep.delays == []


async def test_reason_is_the_last_failover_step(rig: Rig) -> None:
    """Fatal then a retried transient: the reason is the last step, retried-transient."""
    rig.adapter("pa").complete_script["a1"] = [err(F, 400)]
    rig.adapter("pa").complete_script["a2"] = [err(T, 500)]
    resp, d = await run(rig)
    assert resp.model == "a2" and d.reason == "retried-transient"
    assert [a.model for a in d.attempts] == ["a1", "a2", "a2"]


async def test_all_fail_raises_upstream_failed_with_attempts(rig: Rig) -> None:
    """When every model fails, UpstreamFailed lists each attempt without secrets."""
    for mid in ("a1", "a2"):
        rig.adapter("pa").complete_script[mid] = [err(F, 500)]
    rig.adapter("pb").complete_script["b1"] = [err(F, 500)]
    rig.adapter("pc").complete_script["c1"] = [err(F, 500)]
    with pytest.raises(UpstreamFailed) as info:
        await run(rig)
    attempts = info.value.details["attempts"]  # type: ignore[index]
    assert [a["model"] for a in attempts] == ["a1", "a2", "b1", "c1"]
    assert attempts[0] == {
        "model": "a1",
        "provider": "pa",
        "error_class": "fatal",
        "status": 500,
        "message": "fatal happened",
        "latency_ms": 0.0,
        "backoff_ms": 0.0,
    }
    assert info.value.status == 502


async def test_at_most_max_attempts_models() -> None:
    """With seven failing models only max_attempts (5) distinct models are tried."""
    models = ladder(*[(f"m{i}", f"p{i}", 8000) for i in range(7)])
    rig = await make_rig(models)
    for i in range(7):
        rig.adapter(f"p{i}").complete_script[f"m{i}"] = [err(F)]
    with pytest.raises(UpstreamFailed) as info:
        await run(rig)
    assert [a["model"] for a in info.value.details["attempts"]] == ["m0", "m1", "m2", "m3", "m4"]  # type: ignore[index]
    assert rig.adapter("p5").calls == [] and rig.adapter("p6").calls == []


async def test_config_replaced_at_runtime_takes_effect(rig: Rig) -> None:
    """A new config (max_attempts=1) applies to the next request."""
    rig.engine.config = RoutingConfig.from_dict({"max_attempts": 1})
    rig.adapter("pa").complete_script["a1"] = [err(F)]
    with pytest.raises(UpstreamFailed) as info:
        await run(rig)
    assert len(info.value.details["attempts"]) == 1  # type: ignore[index]


async def test_everything_rate_limited_raises_too_many_requests() -> None:
    """If every attempt was rate limited the client gets 429 with the soonest retry."""
    rig = await make_rig(ladder(("a1", "pa", 8000), ("b1", "pb", 8000)))
    rig.adapter("pa").complete_script["a1"] = [err(R, 429, retry_after=20.0)]
    rig.adapter("pb").complete_script["b1"] = [err(R, 429, retry_after=8.0)]
    with pytest.raises(TooManyRequests) as info:
        await run(rig)
    assert info.value.retry_after == pytest.approx(8.0)
    assert info.value.headers["Retry-After"] == "8"
    with pytest.raises(NoEligibleModel) as again:
        await run(rig)
    assert "rate limited" in again.value.details["excluded"]["b1"]  # type: ignore[index]


async def test_repeated_failures_take_the_provider_down() -> None:
    """Five transient failures trip the breaker; retries stop and the provider is skipped."""
    rig = await make_rig(ladder(("a1", "pa", 8000), ("a2", "pa", 8000), ("b1", "pb", 8000)))
    rig.adapter("pa").complete_script["a1"] = [err(T)] * 3
    rig.adapter("pa").complete_script["a2"] = [err(T)] * 3
    resp, _ = await run(rig)
    assert resp.model == "b1"
    assert rig.adapter("pa").calls == ["a1"] * 3 + ["a2"] * 2, "the fifth error trips the breaker"
    assert rig.health.state("pa").state == "down"


async def test_half_open_trial_through_the_engine(rig: Rig) -> None:
    """After the cooldown the down provider gets one trial; success makes it healthy."""
    for _ in range(5):
        rig.health.record_failure("pa", ErrorClass.TRANSIENT, "x")
    resp, _ = await run(rig)
    assert resp.model == "b1"
    rig.clock.advance(30.0)
    resp, _ = await run(rig)
    assert resp.model == "a1" and rig.health.state("pa").state == "healthy"


async def test_adapter_bug_is_treated_as_fatal(rig: Rig) -> None:
    """An unexpected exception from an adapter fails over like a fatal error."""

    async def broken(req: ChatRequest, target: Target) -> ChatResponse:
        raise KeyError("oops")

    rig.adapter("pa").complete = broken  # type: ignore[method-assign]
    resp, d = await run(rig)
    assert resp.model == "b1" and d.reason == "failover-fatal"
    assert d.attempts[0].message == "adapter error (KeyError)"


async def test_hanging_adapter_times_out_as_transient() -> None:
    """An adapter that ignores its timeout is cut off by the engine and failed over."""
    rig = await make_rig(
        ladder(("a1", "pa", 8000), ("b1", "pb", 8000)),
        config=RoutingConfig.from_dict({"transient_backoff_ms": []}),
        timeout_s=0.05,
    )

    async def hang(req: ChatRequest, target: Target) -> ChatResponse:
        await asyncio.sleep(10)
        raise AssertionError("not reached")

    rig.adapter("pa").complete = hang  # type: ignore[method-assign]
    resp, d = await run(rig)
    assert resp.model == "b1" and d.reason == "failover-transient"
    assert d.attempts[0].message == "no answer within 0.05s"


async def test_decision_after_failover_has_cost_of_chosen_model(rig: Rig) -> None:
    """estimated_cost_usd and provider_id describe the model that answered."""
    rig.adapter("pa").complete_script["a1"] = [err(R, 429)]
    _, d = await run(rig, chat(estimated_input_tokens=1000))
    assert d.model.id == "b1"
    assert d.estimated_cost_usd == pytest.approx(1000 * 0.0003 / 1000)
    assert d.estimated_tokens == 1000 and d.mode == "cheap"


async def test_hint_success_keeps_model_hint_reason(rig: Rig) -> None:
    """A hinted model that answers first time gives reason model-hint."""
    resp, d = await run(rig, chat(model="c1"))
    assert resp.model == "c1" and d.reason == "model-hint"
