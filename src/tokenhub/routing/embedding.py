"""Routing for ``/v1/embeddings``: pick an embedding model, dispatch, fail over.

Simpler than the chat engine: there is no scoring profile and no retry of the same
model. Candidates are the catalog's routable models labelled ``kind: embedding`` whose
adapter can embed, whose provider is available, whose context holds the longest input
and whose estimated cost fits the budget. A model hint that names one goes first;
the rest follow cheapest input price first (catalog order breaks ties).

After a failure the next candidate is tried, up to ``max_attempts`` models in all; a
rate-limited provider is cooled down (``Retry-After``) and its other models skipped.
The result carries a ``tokenhub.types.Decision`` so the recorder, logs and metrics
treat an embeddings request like any other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from tokenhub.errors import (
    ProviderError,
)
from tokenhub.observe.health import HealthTracker
from tokenhub.providers.embeddings import (
    Embedder,
    EmbeddingRequest,
    EmbeddingResponse,
    is_embedder,
    is_embedding_model,
)
from tokenhub.routing.catalog import Catalog
from tokenhub.routing.failover import (
    STEP,
    choose,
    exhausted,
    failed_attempt,
    guarded,
    nothing_eligible,
)
from tokenhub.routing.tokens import estimate_text
from tokenhub.types import (
    Attempt,
    Clock,
    Decision,
    ErrorClass,
    ModelConfig,
    Target,
    monotonic,
)

log = logging.getLogger(__name__)

ProviderGate = Callable[[str], str | None]

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_RATE_LIMIT_COOLDOWN_S = 5.0


def input_tokens(req: EmbeddingRequest) -> tuple[int, int]:
    """Estimated (total, longest single input) tokens of a request."""
    sizes = [estimate_text(i) if isinstance(i, str) else len(i) for i in req.inputs]
    return sum(sizes), max(sizes, default=0)


def embedding_cost(model: ModelConfig, tokens: int) -> float:
    """USD for ``tokens`` input tokens on ``model`` (embeddings have no output)."""
    return tokens * model.input_per_1k / 1000.0


@dataclass(slots=True)
class EmbeddingPlan:
    """The ordered candidates of one request and the decision that explains them."""

    decision: Decision
    candidates: list[ModelConfig]
    hint: ModelConfig | None
    input_tokens: int

    @property
    def max_cost_usd(self) -> float:
        """The most any candidate may cost: what a budget reservation must cover."""
        return max((embedding_cost(m, self.input_tokens) for m in self.candidates), default=0.0)


@dataclass(slots=True)
class _Run:
    """State of one failover loop."""

    tried: int = 0
    skip_providers: set[str] = field(default_factory=set)
    skipped: dict[str, str] = field(default_factory=dict)
    last_step: str = ""


class EmbeddingRouter:
    """Chooses an embedding model for each request and dispatches it with failover."""

    def __init__(
        self,
        catalog: Catalog,
        health: HealthTracker,
        *,
        timeout_s: float = 30.0,
        clock: Clock = monotonic,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        rate_limit_cooldown_s: float = DEFAULT_RATE_LIMIT_COOLDOWN_S,
    ) -> None:
        self.catalog = catalog
        self.health = health
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.rate_limit_cooldown_s = rate_limit_cooldown_s
        self._clock = clock
        # Why a provider cannot serve right now beyond its health (a locked vault);
        # the app sets the same gate as the chat engine's.
        self.provider_gate: ProviderGate | None = None

    # -- planning ------------------------------------------------------------------

    def prepare(
        self, req: EmbeddingRequest, *, max_budget_usd: float | None = None
    ) -> EmbeddingPlan:
        """Order the candidates; ``NoEligibleModel`` (or ``ServiceUnavailable`` when only
        the provider gate stands in the way) when there is none. The error carries the
        decision."""
        plan = self._plan(req, max_budget_usd)
        if not plan.candidates:
            raise nothing_eligible(plan.decision, self.catalog, self.provider_gate, "embedding ")
        return plan

    def _plan(self, req: EmbeddingRequest, max_budget_usd: float | None) -> EmbeddingPlan:
        total, longest = input_tokens(req)
        decision = Decision(estimated_tokens=total)
        hint = self.catalog.find(req.model) if req.model else None
        if hint is not None and not is_embedding_model(hint):
            decision.excluded[hint.id] = "not an embedding model"
        eligible = []
        for model in self.catalog.routable():
            if not is_embedding_model(model):
                continue
            why = self._exclusion(model, total, longest, max_budget_usd)
            if why is None:
                eligible.append(model)
            else:
                decision.excluded[model.id] = why
        ordered = _order(eligible, hint)
        decision.ranked = [(m.id, round(m.input_per_1k, 6)) for m in ordered]
        if ordered:
            choose(decision, ordered[0], _initial_reason(ordered[0], hint))
            decision.estimated_cost_usd = embedding_cost(ordered[0], total)
        return EmbeddingPlan(decision, ordered, hint, total)

    def _exclusion(
        self, model: ModelConfig, total: int, longest: int, max_budget_usd: float | None
    ) -> str | None:
        """Why ``model`` cannot take this request, or None when it can."""
        if not is_embedder(self.catalog.adapter(model.provider_id)):
            return f"provider {model.provider_id} cannot embed"
        if longest > model.max_context_tokens:
            return f"context: an input needs {longest} tokens, {model.max_context_tokens} allowed"
        pid = model.provider_id
        if not self.health.is_available(pid):
            return f"provider {pid} unavailable, {self.health.cooldown_remaining(pid):.1f}s left"
        if self.provider_gate is not None and (why := self.provider_gate(pid)):
            return why
        cost = embedding_cost(model, total)
        if max_budget_usd is not None and cost > max_budget_usd:
            return f"estimated cost ${cost:.6f} over budget ${max_budget_usd:.6f}"
        return None

    # -- dispatch ------------------------------------------------------------------

    async def embed(
        self, req: EmbeddingRequest, plan: EmbeddingPlan | None = None
    ) -> tuple[EmbeddingResponse, Decision]:
        """Embed ``req`` with failover; raises UpstreamFailed / TooManyRequests / ..."""
        if plan is None:
            plan = self.prepare(req)
        decision = plan.decision
        run = _Run()
        for model in plan.candidates:
            if run.tried >= self.max_attempts:
                break
            adapter = self._admit(model, run)
            if adapter is None:
                continue
            run.tried += 1
            outcome = await self._try(adapter, model, req, decision)
            if isinstance(outcome, ProviderError):
                self._after_failure(model, outcome, run)
                continue
            failed = any(a.error_class is not None for a in decision.attempts)
            choose(decision, model, run.last_step if failed else _initial_reason(model, plan.hint))
            decision.estimated_cost_usd = embedding_cost(model, plan.input_tokens)
            return outcome, decision
        raise exhausted(decision, run.skipped, run.skip_providers, self.health, "embedding ")

    def _admit(self, model: ModelConfig, run: _Run) -> Embedder | None:
        """The embedder to try ``model`` with now, or None (and why) to skip it."""
        pid = model.provider_id
        adapter = self.catalog.adapter(pid)
        if pid in run.skip_providers:
            run.skipped[model.id] = f"provider {pid} rate-limited during this request"
        elif adapter is None or not is_embedder(adapter):
            run.skipped[model.id] = f"provider {pid} cannot embed"
        elif not self.health.acquire(pid):
            run.skipped[model.id] = f"provider {pid} unavailable"
        else:
            return adapter
        return None

    async def _try(
        self, adapter: Embedder, model: ModelConfig, req: EmbeddingRequest, decision: Decision
    ) -> EmbeddingResponse | ProviderError:
        """One upstream call; its outcome goes to the health tracker and the decision."""
        target = Target(model, req.request_id, timeout_s=self.timeout_s)
        started = self._clock()
        try:
            resp = await guarded(lambda: adapter.embed(req, target), target)
        except ProviderError as exc:
            latency_ms = (self._clock() - started) * 1000.0
            decision.attempts.append(failed_attempt(model, exc, latency_ms))
            self.health.record_failure(model.provider_id, exc.error_class, exc.message, latency_ms)
            return exc
        latency_ms = (self._clock() - started) * 1000.0
        decision.attempts.append(Attempt(model.id, model.provider_id, latency_ms=latency_ms))
        self.health.record_success(model.provider_id, latency_ms)
        return resp

    def _after_failure(self, model: ModelConfig, exc: ProviderError, run: _Run) -> None:
        run.last_step = STEP.get(exc.error_class, "failover-fatal")
        if exc.error_class == ErrorClass.RATE_LIMITED:
            seconds = exc.retry_after if exc.retry_after is not None else self.rate_limit_cooldown_s
            self.health.cool_down(model.provider_id, seconds, "rate limited (429)")
            run.skip_providers.add(model.provider_id)


# -- helpers ---------------------------------------------------------------------------


def _order(models: list[ModelConfig], hint: ModelConfig | None) -> list[ModelConfig]:
    ordered = sorted(models, key=lambda m: m.input_per_1k)  # stable: catalog order on ties
    if hint is None:
        return ordered
    first = [m for m in ordered if m.id == hint.id]
    return first + [m for m in ordered if m.id != hint.id]


def _initial_reason(model: ModelConfig, hint: ModelConfig | None) -> str:
    if hint is not None and hint.id == model.id:
        return "model-hint"
    return "cheapest-embedding"
