"""Thompson sampling over (model, token bucket) arms with decaying Beta posteriors.

Each arm keeps a Beta(alpha, beta) posterior over the reward of sending a request of
one token bucket (``small`` / ``medium`` / ``large``, see ``observe.logsink``) to one
model. Rewards are fractional, in [0, 1]: an observation ``r`` adds ``r`` to alpha
and ``1 - r`` to beta (the usual Bernoulli update, generalised to a blended reward).

Old evidence fades: before an arm is read or updated, the evidence it holds beyond the
prior is scaled by ``0.5 ** (elapsed / half_life_s)``. A model that gets worse therefore
loses its lead after a few half-lives' worth of new observations at most, instead of
being protected by months of good history. Observations that arrive late (older than
the arm's last update, e.g. replayed from the reward log) are discounted the same way.

Weights: an attempt's reward counts ``reward_weight`` pseudo-observations (8 by
default). A blended reward varies far less than a coin flip, so a Beta updated one unit
per attempt would stay as wide as a coin's and keep spending traffic on models that are
plainly worse; 8 halved the benchmark's regret against 1 (bench/README.md). Client
feedback is a quality signal nothing else measures (latency and cost are in the reward
already), so one judgement counts twice an attempt (``feedback_weight`` 16): a
thumbs-down outweighs one fast, cheap, wrong answer.

Times are wall-clock seconds (``clock``) because arms are persisted and rebuilt from
the reward log, whose timestamps are wall-clock too.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tokenhub.types import Clock, ModelConfig

BUCKETS = ("small", "medium", "large")


@dataclass(slots=True)
class ArmState:
    """One arm's posterior as of ``updated_at`` (before any later decay)."""

    model: str
    bucket: str
    alpha: float
    beta: float
    pulls: int = 0
    updated_at: float = 0.0

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)


class Bandit:
    """Thompson sampling over ``(model_id, bucket)`` arms.

    ``order`` samples every eligible model's posterior and ranks by the sample;
    ``update`` folds one attempt's reward in; ``feedback`` one client judgement.
    ``snapshot``/``restore`` move the arms to and from the store.
    """

    def __init__(
        self,
        *,
        half_life_s: float = 3600.0,
        prior: tuple[float, float] = (1.0, 1.0),
        feedback_weight: float = 16.0,
        reward_weight: float = 8.0,
        clock: Clock = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if half_life_s <= 0 or feedback_weight <= 0 or reward_weight <= 0:
            raise ValueError("need half_life_s, feedback_weight and reward_weight above 0")
        if min(prior) <= 0:
            raise ValueError("prior alpha and beta must be above 0")
        self.half_life_s = half_life_s
        self.prior = prior
        self.feedback_weight = feedback_weight
        self.reward_weight = reward_weight
        self._clock = clock
        self._rng = rng or random.Random()
        self._arms: dict[tuple[str, str], ArmState] = {}

    # -- choosing ------------------------------------------------------------------

    def order(self, models: Sequence[ModelConfig], bucket: str) -> list[tuple[ModelConfig, float]]:
        """``models`` ranked by one posterior sample each, highest first.

        Unknown arms sample from the prior, so a new model gets explored. Ties (rare
        with continuous samples) fall back to the model id for determinism.
        """
        now = self._clock()
        draws = []
        for model in models:
            alpha, beta = self._current(model.id, bucket, now)
            draws.append((model, self._rng.betavariate(alpha, beta)))
        draws.sort(key=lambda d: (-d[1], d[0].id))
        return draws

    # -- learning ------------------------------------------------------------------

    def update(self, model_id: str, bucket: str, reward: float, *, at: float | None = None) -> None:
        """Fold one attempt's ``reward`` (clamped to [0, 1]) into its arm."""
        self._observe(model_id, bucket, _clamp(reward), 1, self.reward_weight, at)

    def update_many(
        self, model_id: str, bucket: str, rewards: Iterable[float], *, at: float | None = None
    ) -> None:
        """Fold several attempts' rewards, observed at one moment, into one arm: the same
        as ``update`` for each in turn, with the decay worked out once."""
        values = [_clamp(r) for r in rewards]
        if values:
            self._observe(model_id, bucket, math.fsum(values), len(values), self.reward_weight, at)

    def feedback(
        self, model_id: str, bucket: str, score: float, *, at: float | None = None
    ) -> None:
        """Fold a client's quality ``score`` in [0, 1] in, worth ``feedback_weight`` pulls."""
        self._observe(model_id, bucket, _clamp(score), 0, self.feedback_weight, at)

    def _observe(
        self,
        model_id: str,
        bucket: str,
        total: float,
        pulls: int,
        weight: float,
        at: float | None,
    ) -> None:
        # ``total``: the sum of max(1, pulls) values in [0, 1]; feedback is one value
        # that is not a pull.
        now = self._clock() if at is None else at
        arm = self._arm(model_id, bucket, now)
        if now >= arm.updated_at:
            self._decay(arm, now)
        else:  # a late observation: it has faded as much as it would have by now
            weight *= self._factor(arm.updated_at - now)
        arm.alpha += weight * total
        arm.beta += weight * (max(1, pulls) - total)
        arm.pulls += pulls

    # -- reading -------------------------------------------------------------------

    def mean(self, model_id: str, bucket: str) -> float:
        """The posterior mean of an arm now (the prior's mean when unknown)."""
        alpha, beta = self._current(model_id, bucket, self._clock())
        return alpha / (alpha + beta)

    def summary(self) -> list[dict[str, Any]]:
        """Every arm as of now (decay applied): alpha, beta, mean, pulls, last update."""
        now = self._clock()
        out = []
        for (model_id, bucket), arm in sorted(self._arms.items()):
            alpha, beta = self._current(model_id, bucket, now)
            out.append(
                {
                    "model": model_id,
                    "bucket": bucket,
                    "alpha": round(alpha, 6),
                    "beta": round(beta, 6),
                    "mean": round(alpha / (alpha + beta), 6),
                    "pulls": arm.pulls,
                    "updated_at": arm.updated_at,
                }
            )
        return out

    def snapshot(self) -> list[ArmState]:
        """Copies of every arm, as stored (no decay applied)."""
        return [
            ArmState(a.model, a.bucket, a.alpha, a.beta, a.pulls, a.updated_at)
            for a in self._arms.values()
        ]

    def restore(self, arms: Iterable[ArmState]) -> None:
        """Replace every arm with ``arms`` (a ``snapshot()``, or rows from the store)."""
        self._arms = {
            (a.model, a.bucket): ArmState(a.model, a.bucket, a.alpha, a.beta, a.pulls, a.updated_at)
            for a in arms
            if a.alpha > 0 and a.beta > 0 and math.isfinite(a.alpha + a.beta)
        }

    def forget(self, model_id: str) -> None:
        """Drop every arm of ``model_id`` (a removed model)."""
        for key in [k for k in self._arms if k[0] == model_id]:
            del self._arms[key]

    @property
    def last_update(self) -> float:
        """The newest ``updated_at`` of any arm (0 when there is none)."""
        return max((a.updated_at for a in self._arms.values()), default=0.0)

    # -- decay ---------------------------------------------------------------------

    def _current(self, model_id: str, bucket: str, now: float) -> tuple[float, float]:
        arm = self._arms.get((model_id, bucket))
        if arm is None:
            return self.prior
        f = self._factor(now - arm.updated_at) if now > arm.updated_at else 1.0
        pa, pb = self.prior
        return pa + (arm.alpha - pa) * f, pb + (arm.beta - pb) * f

    def _arm(self, model_id: str, bucket: str, now: float) -> ArmState:
        key = (model_id, bucket)
        arm = self._arms.get(key)
        if arm is None:
            arm = ArmState(model_id, bucket, self.prior[0], self.prior[1], 0, now)
            self._arms[key] = arm
        return arm

    def _decay(self, arm: ArmState, now: float) -> None:
        f = self._factor(now - arm.updated_at)
        pa, pb = self.prior
        arm.alpha = pa + (arm.alpha - pa) * f
        arm.beta = pb + (arm.beta - pb) * f
        arm.updated_at = now

    def _factor(self, elapsed: float) -> float:
        return float(0.5 ** (max(0.0, elapsed) / self.half_life_s))


def _clamp(value: float) -> float:
    if not math.isfinite(value):
        return 0.0
    return min(1.0, max(0.0, value))
