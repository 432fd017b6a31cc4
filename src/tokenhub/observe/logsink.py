"""The log sink: turns outcomes into request-log and reward-log rows.

One request row per ``Outcome`` (with its routing decision serialised as a trace) and
one reward row per upstream attempt in ``outcome.decision.attempts``.

Reward (what a bandit maximises), in [0, 1]::

    failed attempt  -> 0
    successful one  -> 0.4 + 0.3 * (1 - cost_norm) + 0.3 * (1 - latency_norm)
    cost_norm    = min(1, cost_usd / max_budget_usd)      (0 budget: 0 if free else 1)
    latency_norm = min(1, latency_ms / max_latency_ms)

A failed attempt costs nothing; the successful one costs ``outcome.cost_usd``. The
token bucket is the request's estimated input size: small (< 1,000), medium
(<= 10,000), large.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokenhub.store.db import BulkInsert, json_dumps
from tokenhub.store.logs import (
    INSERT_REQUESTS,
    INSERT_REWARDS,
    REQUEST_COLUMNS,
    REWARD_COLUMNS,
    LogRepo,
    to_micro,
)
from tokenhub.types import Attempt, Decision, Outcome, Policy

SMALL_TOKENS = 1_000
MEDIUM_TOKENS = 10_000
_MAX_TEXT = 300


def token_bucket(input_tokens: int) -> str:
    """``"small"`` below 1,000 input tokens, ``"medium"`` up to 10,000, else ``"large"``."""
    if input_tokens < SMALL_TOKENS:
        return "small"
    return "medium" if input_tokens <= MEDIUM_TOKENS else "large"


def attempt_succeeded(attempt: Attempt, outcome: Outcome) -> bool:
    """An attempt succeeded when it raised nothing and the client got a success.

    The last attempt of a stream that broke after its first chunk raised nothing in the
    failover loop, but the request still failed: it counts as a failure.
    """
    return attempt.error_class is None and outcome.status < 400


def reward(attempt: Attempt, outcome: Outcome, policy_budget: Policy) -> float:
    """The attempt's reward in [0, 1] (see the module docstring for the blend)."""
    if not attempt_succeeded(attempt, outcome):
        return 0.0
    return success_reward(outcome.cost_usd, attempt_latency(attempt, outcome), policy_budget)


def success_reward(cost_usd: float, latency_ms: float, policy_budget: Policy) -> float:
    """The reward of a successful attempt that cost ``cost_usd`` and took ``latency_ms``."""
    budget = policy_budget.max_budget_usd
    cost_norm = min(1.0, cost_usd / budget) if budget > 0 else (0.0 if cost_usd <= 0 else 1.0)
    latency_norm = min(1.0, latency_ms / max(1.0, float(policy_budget.max_latency_ms)))
    value = 0.4 + 0.3 * (1.0 - max(0.0, cost_norm)) + 0.3 * (1.0 - max(0.0, latency_norm))
    return min(1.0, max(0.0, value))


def attempt_latency(attempt: Attempt, outcome: Outcome) -> float:
    """The attempt's own latency; the request's when the engine did not measure one."""
    return attempt.latency_ms if attempt.latency_ms > 0 else outcome.latency_ms


def policy_of(outcome: Outcome, default: Policy) -> Policy:
    """The budgets the request ran under (the configured defaults when not routed)."""
    d = outcome.decision
    return d.policy if d is not None and d.policy is not None else default


def decision_trace(decision: Decision) -> dict[str, Any]:
    """The routing decision as JSON-ready data: why the request went where it went."""
    model = decision.model
    return {
        "mode": decision.mode,
        "model": model.id if model else None,
        "provider": decision.provider_id or None,
        "reason": decision.reason,
        "estimated_tokens": decision.estimated_tokens,
        "estimated_cost_usd": decision.estimated_cost_usd,
        "ranked": [{"model": m, "score": s} for m, s in decision.ranked],
        "excluded": [{"model": m, "reason": why} for m, why in decision.excluded.items()],
        "attempts": [
            {
                "model": a.model,
                "provider": a.provider,
                "error_class": None if a.error_class is None else str(a.error_class),
                "status": a.status,
                "message": a.message[:_MAX_TEXT],
                "latency_ms": round(a.latency_ms, 3),
                "backoff_ms": a.backoff_ms,
            }
            for a in decision.attempts
        ],
        "cooldowns": [dict(c) for c in decision.cooldowns],
    }


def request_row(outcome: Outcome) -> dict[str, Any]:
    """The request-log row of one outcome."""
    d = outcome.decision
    values = _request_values(outcome, decision_trace(d) if d else None)
    return dict(zip(REQUEST_COLUMNS, values, strict=True))


def request_values(outcome: Outcome) -> tuple[Any, ...]:
    """``request_row`` as values in ``REQUEST_COLUMNS`` order, the trace as JSON text."""
    d = outcome.decision
    return _request_values(outcome, json_dumps(decision_trace(d)) if d else None)


def _request_values(outcome: Outcome, trace: Any) -> tuple[Any, ...]:
    # Keep in REQUEST_COLUMNS order (store.logs.request_log).
    d = outcome.decision
    usage = outcome.usage
    error = outcome.error
    return (
        outcome.started_at,
        outcome.request_id,
        outcome.api_key_id,
        outcome.surface,
        outcome.mode,
        outcome.model,
        outcome.provider,
        usage.prompt_tokens,
        usage.completion_tokens,
        to_micro(outcome.cost_usd),
        outcome.latency_ms,
        outcome.ttft_ms,
        outcome.status,
        outcome.error_class,
        None if error is None else error[:_MAX_TEXT],
        outcome.reason[:200],
        len(d.attempts) if d else 0,
        outcome.stream,
        trace,
    )


def reward_rows(outcome: Outcome, default: Policy) -> list[dict[str, Any]]:
    """One reward row per upstream attempt of ``outcome`` (none without a decision)."""
    return [dict(zip(REWARD_COLUMNS, v, strict=True)) for v in reward_values(outcome, default)]


def reward_values(outcome: Outcome, default: Policy) -> list[tuple[Any, ...]]:
    """``reward_rows`` as values in ``REWARD_COLUMNS`` order.

    What all attempts of the request share is worked out once (this runs for every
    attempt of every request); per attempt, success and latency come from
    ``attempt_succeeded`` and ``attempt_latency``, the value from ``success_reward``,
    exactly as ``reward`` computes it.
    """
    d = outcome.decision
    if d is None or not d.attempts:
        return []
    policy = policy_of(outcome, default)
    bucket = token_bucket(d.estimated_tokens or outcome.usage.prompt_tokens)
    latency_budget = float(policy.max_latency_ms)
    cost_budget = to_micro(policy.max_budget_usd)
    cost, cost_micro = outcome.cost_usd, to_micro(outcome.cost_usd)
    started, request_id, key_id, mode = (
        outcome.started_at,
        outcome.request_id,
        outcome.api_key_id,
        outcome.mode,
    )
    rows = []
    # Keep in REWARD_COLUMNS order (store.logs.reward_log).
    for i, a in enumerate(d.attempts):
        latency = attempt_latency(a, outcome)
        ok = attempt_succeeded(a, outcome)
        if ok:
            value, error_class = success_reward(cost, latency, policy), None
        else:
            value = 0.0
            error_class = str(a.error_class) if a.error_class else outcome.error_class
        rows.append(
            (
                started,
                request_id,
                i,
                key_id,
                a.model,
                a.provider,
                mode,
                bucket,
                latency_budget,
                cost_budget,
                latency,
                cost_micro if ok else 0,
                ok,
                error_class,
                value,
            )
        )
    return rows


class LogSink:
    """A ``BatchSink`` writing request and reward rows through ``LogRepo``.

    ``default_policy`` supplies the budgets a reward is measured against while the
    decision does not carry the request's own policy.
    """

    name = "logs"

    def __init__(self, repo: LogRepo, *, default_policy: Policy | None = None) -> None:
        self._repo = repo
        self._default = default_policy or Policy()

    async def write(self, batch: Sequence[Outcome]) -> None:
        (_, requests), (_, rewards) = self.rows(batch)
        await self._repo.insert_rows(requests, rewards)

    def rows(self, batch: Sequence[Outcome]) -> list[tuple[BulkInsert, list[tuple[Any, ...]]]]:
        """The rows of ``batch`` per table (requests, then rewards), for ``write`` or a
        ``DatabaseWriter`` to store (``observe.offloop``)."""
        return [
            (INSERT_REQUESTS, [request_values(o) for o in batch]),
            (INSERT_REWARDS, [row for o in batch for row in reward_values(o, self._default)]),
        ]
