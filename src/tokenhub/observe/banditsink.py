"""The bandit sink: every upstream attempt of every outcome updates its bandit arm.

The reward is the reward log's (``observe.logsink.reward``): 0 for a failed attempt,
otherwise a blend of success, cost and latency measured against the request's own
budgets. The arm is the attempt's model and the request's token bucket.

All traffic teaches the bandit, whatever mode routed it: a "cheap" request that went
to a model says as much about that model as a "thompson" one.

How online is "online": the recorder hands batches to its sinks at least every
``flush_interval_s`` (0.25 s by default) and as soon as ``batch_size`` outcomes wait,
so an arm reflects an attempt within a quarter of a second, without the request path
touching the bandit. Code that wants the update at the very moment of the attempt
can call ``observe(outcome)`` (or ``Bandit.update``) directly; it must then leave
this sink out of the recorder, or each attempt would count twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenhub.observe.logsink import policy_of, reward, token_bucket
from tokenhub.routing.bandit import Bandit
from tokenhub.types import Outcome, Policy


class BanditSink:
    """A recorder ``BatchSink`` that folds each attempt's reward into the bandit."""

    name = "bandit"

    def __init__(self, bandit: Bandit, default_policy: Policy | None = None) -> None:
        self.bandit = bandit
        self._default = default_policy or Policy()

    async def write(self, batch: Sequence[Outcome]) -> None:
        # One arm update per (model, bucket) and batch: the batch arrived within a
        # flush interval, so decaying once for all of it is what per-attempt updates do.
        rewards: dict[tuple[str, str], list[float]] = {}
        for outcome in batch:
            for model, bucket, value in self._rewards(outcome):
                if (values := rewards.get((model, bucket))) is None:
                    rewards[model, bucket] = [value]
                else:
                    values.append(value)
        for (model, bucket), values in rewards.items():
            self.bandit.update_many(model, bucket, values)

    def observe(self, outcome: Outcome) -> int:
        """Update the arms of ``outcome``'s attempts; returns how many were updated."""
        n = 0
        for model, bucket, value in self._rewards(outcome):
            self.bandit.update(model, bucket, value)
            n += 1
        return n

    def _rewards(self, outcome: Outcome) -> list[tuple[str, str, float]]:
        """``(model, bucket, reward)`` of each attempt of ``outcome`` (none unrouted)."""
        d = outcome.decision
        if d is None or not d.attempts:
            return []
        policy = policy_of(outcome, self._default)
        bucket = token_bucket(d.estimated_tokens or outcome.usage.prompt_tokens)
        return [(a.model, bucket, reward(a, outcome, policy)) for a in d.attempts]
