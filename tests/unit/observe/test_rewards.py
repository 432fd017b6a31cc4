"""Rewards, token buckets, decision traces and the rows the log sink writes."""

from __future__ import annotations

import pytest

from tokenhub.observe.logsink import (
    attempt_latency,
    attempt_succeeded,
    decision_trace,
    policy_of,
    request_row,
    reward,
    reward_rows,
    token_bucket,
)
from tokenhub.types import Attempt, Decision, ErrorClass, ModelConfig, Outcome, Policy, Usage

POLICY = Policy(max_budget_usd=0.01, max_latency_ms=2000)


def ok_outcome(cost: float = 0.0, latency: float = 100.0, status: int = 200) -> Outcome:
    d = Decision(estimated_tokens=500, attempts=[Attempt("m", "p", latency_ms=latency)])
    return Outcome("r", "openai", 1.0, status, latency, cost_usd=cost, decision=d)


def failover_decision() -> Decision:
    return Decision(
        model=ModelConfig("good", "p2"),
        provider_id="p2",
        reason="failover-transient",
        estimated_tokens=2500,
        estimated_cost_usd=0.0042,
        mode="cheap",
        ranked=[("bad", 0.91), ("good", 0.5)],
        excluded={
            "huge": "context: needs 9000 tokens, 7372 usable of 8192",
            "down": "provider p9 unavailable (5 consecutive errors), 12.5s left",
            "down2": "provider p9 unavailable (5 consecutive errors), 12.5s left",
        },
        attempts=[
            Attempt("bad", "p1", ErrorClass.TRANSIENT, 503, "upstream 503", 40.0, 250.0),
            Attempt("bad", "p1", ErrorClass.FATAL, 500, "boom", 30.0, 0.0),
            Attempt("good", "p2", latency_ms=400.0),
        ],
        cooldowns=[{"provider": "p9", "reason": "5 consecutive errors", "remaining_s": 12.5}],
    )


@pytest.mark.parametrize(
    "tokens,bucket",
    [(0, "small"), (999, "small"), (1000, "medium"), (10_000, "medium"), (10_001, "large")],
)
def test_token_bucket_edges(tokens: int, bucket: str) -> None:
    """small < 1,000 input tokens <= medium <= 10,000 < large."""
    assert token_bucket(tokens) == bucket


def test_free_instant_success_earns_full_reward() -> None:
    """Zero cost and near-zero latency give (1)(0.3) + (1)(0.3) + 0.4 = 1."""
    o = ok_outcome(cost=0.0, latency=0.0)
    assert reward(Attempt("m", "p", latency_ms=0.0), o, POLICY) == pytest.approx(1.0, abs=1e-3)


def test_reward_blends_cost_and_latency() -> None:
    """Half the budget and a quarter of the latency budget: 0.3*0.5 + 0.3*0.75 + 0.4."""
    o = ok_outcome(cost=0.005, latency=500.0)
    got = reward(o.decision.attempts[0], o, POLICY)  # type: ignore[union-attr]
    assert got == pytest.approx(0.15 + 0.225 + 0.4)


def test_reward_caps_overruns_at_the_floor() -> None:
    """Cost and latency past their budgets normalise to 1: the success floor of 0.4."""
    o = ok_outcome(cost=1.0, latency=99_999.0)
    assert reward(o.decision.attempts[0], o, POLICY) == pytest.approx(0.4)  # type: ignore[union-attr]


def test_failure_earns_zero() -> None:
    """A failed attempt, or a success the client still saw fail, rewards 0."""
    failed = Attempt("m", "p", ErrorClass.TRANSIENT, latency_ms=1.0)
    assert reward(failed, ok_outcome(), POLICY) == 0.0
    broken_stream = ok_outcome(status=502)
    assert reward(broken_stream.decision.attempts[0], broken_stream, POLICY) == 0.0  # type: ignore[union-attr]


def test_zero_budget_treats_free_as_free() -> None:
    """With a zero cost budget, a free answer is not penalised and a paid one fully is."""
    zero = Policy(max_budget_usd=0.0, max_latency_ms=1000)
    free, paid = ok_outcome(0.0, 0.0), ok_outcome(0.001, 0.0)
    a = Attempt("m", "p", latency_ms=0.0)
    assert reward(a, free, zero) == pytest.approx(1.0, abs=1e-3)
    assert reward(a, paid, zero) == pytest.approx(0.7, abs=1e-3)


def test_one_reward_row_per_attempt() -> None:
    """Failed attempts cost 0 and earn 0; the winner carries the request's cost."""
    o = Outcome(
        "req-1",
        "native",
        50.0,
        200,
        800.0,
        mode="cheap",
        model="good",
        provider="p2",
        api_key_id="k1",
        usage=Usage(2400, 100),
        cost_usd=0.004,
        decision=failover_decision(),
    )
    rows = reward_rows(o, POLICY)
    assert [(r["attempt"], r["model"], r["success"]) for r in rows] == [
        (0, "bad", False),
        (1, "bad", False),
        (2, "good", True),
    ]
    assert [r["error_class"] for r in rows] == ["transient", "fatal", None]
    assert [r["cost_micro_usd"] for r in rows] == [0, 0, 4000]
    assert [r["reward"] for r in rows[:2]] == [0.0, 0.0]
    assert rows[2]["reward"] == pytest.approx(0.3 * 0.6 + 0.3 * 0.8 + 0.4)
    assert {r["token_bucket"] for r in rows} == {"medium"}
    assert {(r["mode"], r["api_key_id"], r["latency_budget_ms"]) for r in rows} == {
        ("cheap", "k1", 2000.0)
    }
    assert rows[2]["cost_budget_micro_usd"] == 10_000


@pytest.mark.parametrize("status", [200, 499, 502])
@pytest.mark.parametrize("cost", [0.0, 0.004, 0.5])
@pytest.mark.parametrize("budget", [0.0, 0.01])
def test_reward_rows_agree_with_the_reference_functions(
    status: int, cost: float, budget: float
) -> None:
    """The rows' fast path computes per attempt what reward(), attempt_succeeded() and
    attempt_latency() say, for failed and answered requests, free and paid, any budget."""
    attempts = [
        Attempt("a", "p1", ErrorClass.TRANSIENT, 503, "x", 40.0),
        Attempt("b", "p2", latency_ms=0.0),  # not measured: the request's latency counts
        Attempt("c", "p3", latency_ms=900.0),
    ]
    policy = Policy(max_budget_usd=budget, max_latency_ms=1000)
    d = Decision(estimated_tokens=50, attempts=attempts, policy=policy)
    o = Outcome(
        "r",
        "openai",
        1.0,
        status,
        250.0,
        cost_usd=cost,
        decision=d,
        error_class=(None if status < 400 else "upstream"),
    )
    rows = reward_rows(o, POLICY)
    assert [r["attempt"] for r in rows] == [0, 1, 2]
    for a, row in zip(attempts, rows, strict=True):
        ok = attempt_succeeded(a, o)
        assert row["success"] is ok
        assert row["reward"] == reward(a, o, policy)
        assert row["latency_ms"] == attempt_latency(a, o)
        assert row["cost_micro_usd"] == (round(cost * 1_000_000) if ok else 0)
        assert row["error_class"] == (None if ok else (a.error_class or o.error_class))


def test_no_decision_means_no_reward_rows() -> None:
    """A request refused before routing (bad body, auth) has no attempts to reward."""
    assert reward_rows(Outcome("r", "openai", 0.0, 400, 1.0), POLICY) == []


def test_policy_falls_back_to_defaults_and_reads_the_decision_when_present() -> None:
    """Budgets come from the decision's policy when it has one, else the defaults."""
    o = ok_outcome()
    assert policy_of(o, POLICY).max_latency_ms == 2000
    assert o.decision is not None
    o.decision.policy = Policy(max_budget_usd=1.0, max_latency_ms=5)
    assert policy_of(o, POLICY).max_latency_ms == 5


def test_decision_trace_answers_why_it_went_there() -> None:
    """The trace keeps ranking, exclusions, attempts with back-off and cooldowns in force."""
    t = decision_trace(failover_decision())
    assert (t["model"], t["provider"], t["reason"], t["mode"]) == (
        "good",
        "p2",
        "failover-transient",
        "cheap",
    )
    assert t["ranked"] == [{"model": "bad", "score": 0.91}, {"model": "good", "score": 0.5}]
    assert {"model": "huge", "reason": "context: needs 9000 tokens, 7372 usable of 8192"} in t[
        "excluded"
    ]
    assert [(a["error_class"], a["backoff_ms"]) for a in t["attempts"]] == [
        ("transient", 250.0),
        ("fatal", 0.0),
        (None, 0.0),
    ]
    assert t["cooldowns"] == [
        {"provider": "p9", "reason": "5 consecutive errors", "remaining_s": 12.5}
    ]


def test_request_row_maps_every_field() -> None:
    """The request row holds money in micro-dollars, the attempt count and the trace."""
    o = Outcome(
        "req-1",
        "anthropic",
        50.0,
        200,
        800.0,
        model="good",
        provider="p2",
        stream=True,
        usage=Usage(10, 20),
        cost_usd=0.0012346,
        ttft_ms=55.0,
        reason="failover-transient",
        decision=failover_decision(),
    )
    row = request_row(o)
    assert (row["tokens_in"], row["tokens_out"], row["cost_micro_usd"]) == (10, 20, 1235)
    assert (row["attempts"], row["stream"], row["ttft_ms"], row["ts"]) == (3, True, 55.0, 50.0)
    assert row["trace"] == decision_trace(failover_decision())
    assert request_row(Outcome("x", "openai", 0.0, 401, 1.0))["trace"] is None
