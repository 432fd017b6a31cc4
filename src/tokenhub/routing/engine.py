"""The routing engine: pick eligible models, rank them, dispatch, fail over.

For one request: estimate tokens, filter the catalog's routable models (weight,
context fit, provider health, budget), rank the survivors by the mode's profile (a
valid model hint goes first), then try them in order. What happens after a failure
depends on the ``ProviderError`` class:

    transient         retry the same model after each configured backoff, then move on
    rate_limited      cool the provider down (Retry-After) and skip all its models
    context_overflow  move on to a model with a larger context than the failed one
    fatal             move on to the next model

At most ``max_attempts`` distinct models are tried. Streams can only fail over before
their first chunk, so the first chunk is awaited inside the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from tokenhub.errors import (
    BadRequest,
    ProviderError,
)
from tokenhub.observe.health import HealthTracker
from tokenhub.observe.logsink import token_bucket
from tokenhub.observe.tracing import Tracing
from tokenhub.providers.base import Adapter
from tokenhub.routing.bandit import Bandit
from tokenhub.routing.catalog import Catalog
from tokenhub.routing.config import RoutingConfig
from tokenhub.routing.failover import (
    STEP,
    choose,
    exhausted,
    failed_attempt,
    guarded,
    nothing_eligible,
)
from tokenhub.routing.scoring import Ranked, estimate_cost, expected_latency_ms, score
from tokenhub.routing.tokens import estimate_tokens
from tokenhub.types import (
    Attempt,
    ChatRequest,
    ChatResponse,
    Chunk,
    Clock,
    Decision,
    ErrorClass,
    ModelConfig,
    Policy,
    Target,
    monotonic,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
ProviderGate = Callable[[str], str | None]
Sleep = Callable[[float], Awaitable[Any]]
Call = Callable[[Adapter, Target], Awaitable[T]]


@dataclass(slots=True)
class Plan:
    """The ranked candidates of one request and the decision that explains them."""

    decision: Decision
    candidates: list[Ranked]
    hint: ModelConfig | None
    input_tokens: int
    output_tokens: int

    @property
    def max_cost_usd(self) -> float:
        """The most any candidate may cost: what a budget reservation must cover."""
        return max(
            (
                estimate_cost(r.model, self.input_tokens, self.output_tokens)
                for r in self.candidates
            ),
            default=0.0,
        )


@dataclass(slots=True)
class _Failover:
    """State of one failover loop."""

    tried: int = 0
    skip_providers: set[str] = field(default_factory=set)
    min_context: int = 0  # after an overflow, only larger contexts are worth a try
    last_step: str = ""
    skipped: dict[str, str] = field(default_factory=dict)


class RoutingEngine:
    """Chooses a model for each request and dispatches it with failover.

    ``config`` may be replaced at any time; each request reads it once at its start.
    """

    def __init__(
        self,
        catalog: Catalog,
        health: HealthTracker,
        config: RoutingConfig,
        *,
        timeout_s: float = 30.0,
        clock: Clock = monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.catalog = catalog
        self.health = health
        self.config = config
        self.timeout_s = timeout_s
        self._clock = clock
        self._sleep = sleep
        # Why a provider cannot serve right now beyond its health (the vault being
        # locked, say), or None. Set by the app; excluded models carry the reason.
        self.provider_gate: ProviderGate | None = None
        self.tracing: Tracing = Tracing.disabled()
        # Ranks "thompson" requests; without one, "thompson" scores like "normal".
        self.bandit: Bandit | None = None

    # -- policy and planning -------------------------------------------------------

    def policy(
        self,
        mode: str | None = None,
        max_budget_usd: float | None = None,
        max_latency_ms: int | None = None,
        min_weight: int | None = None,
    ) -> Policy:
        """Request overrides merged onto the config defaults; ``BadRequest`` if invalid."""
        cfg = self.config
        mode = mode or cfg.default_mode
        if mode not in cfg.profiles:
            known = ", ".join(cfg.profiles)
            raise BadRequest(f"unknown mode '{mode}'; expected one of {known}", code="bad_mode")
        policy = Policy(
            mode=mode,
            max_budget_usd=cfg.max_budget_usd if max_budget_usd is None else max_budget_usd,
            max_latency_ms=cfg.max_latency_ms if max_latency_ms is None else max_latency_ms,
            min_weight=cfg.min_weight if min_weight is None else min_weight,
        )
        _check_policy(policy)
        return policy

    def plan(self, req: ChatRequest, policy: Policy) -> Decision:
        """The routing decision before dispatch; ``NoEligibleModel`` when nothing fits."""
        return self.prepare(req, policy).decision

    def prepare(self, req: ChatRequest, policy: Policy) -> Plan:
        """Plan ``req`` (to reserve budget for it, say) before ``complete``/``open_stream``.

        Raises ``NoEligibleModel``, or ``ServiceUnavailable`` when only the provider gate
        (a locked vault) stands between the request and a model.
        """
        plan = self._plan(req, policy, self.config)
        if not plan.candidates:
            raise nothing_eligible(plan.decision, self.catalog, self.provider_gate)
        return plan

    def _plan(self, req: ChatRequest, policy: Policy, cfg: RoutingConfig) -> Plan:
        tokens = estimate_tokens(req)
        out_tokens = req.max_tokens or cfg.default_output_tokens
        decision = Decision(mode=policy.mode, estimated_tokens=tokens, policy=policy)
        eligible = []
        for model in self.catalog.routable():
            if model.labels.get("kind") == "embedding":
                continue  # served by the embedding router, never a chat candidate
            why = self._exclusion(
                model, tokens, req.max_tokens or 0, out_tokens, policy, cfg, decision
            )
            if why is None:
                eligible.append(model)
            else:
                decision.excluded[model.id] = why
        ranked = self._rank(eligible, tokens, out_tokens, policy, cfg)
        hint = self.catalog.find(req.model) if req.model else None
        ranked = _hint_first(ranked, hint)
        decision.ranked = [(r.model.id, round(r.score, 6)) for r in ranked]
        if ranked:
            top = ranked[0].model
            choose(decision, top, _initial_reason(top, hint))
            decision.estimated_cost_usd = estimate_cost(top, tokens, out_tokens)
        return Plan(decision, ranked, hint, tokens, out_tokens)

    def _rank(
        self,
        eligible: list[ModelConfig],
        tokens: int,
        out_tokens: int,
        policy: Policy,
        cfg: RoutingConfig,
    ) -> list[Ranked]:
        """Eligible models best first: by bandit samples in "thompson", else by score."""
        if policy.mode == "thompson" and self.bandit is not None:
            # The sampled value is the score, so the trace shows the draws in order.
            draws = self.bandit.order(eligible, token_bucket(tokens))
            return [Ranked(m, sample, {"sampled": sample}) for m, sample in draws]
        return score(
            eligible,
            input_tokens=tokens,
            output_tokens=out_tokens,
            profile=cfg.profile(policy.mode),
            health=self.health,
        )

    def _exclusion(
        self,
        model: ModelConfig,
        tokens: int,
        max_tokens: int,
        out_tokens: int,
        policy: Policy,
        cfg: RoutingConfig,
        decision: Decision,
    ) -> str | None:
        """Why ``model`` cannot take this request, or None when it can."""
        if model.weight < policy.min_weight:
            return f"weight {model.weight} below min_weight {policy.min_weight}"
        usable = int(model.max_context_tokens * (1 - cfg.context_headroom))
        if tokens + max_tokens > usable:
            return (
                f"context: needs {tokens + max_tokens} tokens, "
                f"{usable} usable of {model.max_context_tokens}"
            )
        if not self.health.is_available(model.provider_id):
            return self._unavailable(model.provider_id, decision)
        if self.provider_gate is not None and (why := self.provider_gate(model.provider_id)):
            return why
        cost = estimate_cost(model, tokens, out_tokens)
        if cost > policy.max_budget_usd:
            return f"estimated cost ${cost:.6f} over budget ${policy.max_budget_usd:.6f}"
        return None

    def _unavailable(self, provider_id: str, decision: Decision | None = None) -> str:
        h = self.health.state(provider_id)
        left = self.health.cooldown_remaining(provider_id)
        why = h.cooldown_reason or ("trial in flight" if h.state == "half_open" else h.state)
        if decision is not None and all(c["provider"] != provider_id for c in decision.cooldowns):
            decision.cooldowns.append(
                {"provider": provider_id, "reason": why, "remaining_s": round(left, 3)}
            )
        return f"provider {provider_id} unavailable ({why}), {left:.1f}s left"

    # -- dispatch --------------------------------------------------------------------

    async def complete(
        self, req: ChatRequest, policy: Policy, plan: Plan | None = None
    ) -> tuple[ChatResponse, Decision]:
        """Answer ``req`` with failover; raises UpstreamFailed / TooManyRequests / ..."""

        async def call(adapter: Adapter, target: Target) -> ChatResponse:
            return await adapter.complete(req, target)

        response, decision, _ = await self._dispatch(req, policy, plan, call, record_success=True)
        return response, decision

    async def open_stream(
        self, req: ChatRequest, policy: Policy, plan: Plan | None = None
    ) -> tuple[AsyncIterator[Chunk], Decision]:
        """Open a stream with failover up to its first chunk.

        The returned iterator yields every chunk, reports the stream's outcome to the
        health tracker, and closes the upstream stream when it is closed early.
        """

        async def call(
            adapter: Adapter, target: Target
        ) -> tuple[AsyncIterator[Chunk], Chunk | None]:
            return await open_first_chunk(adapter.stream(req, target))

        (upstream, first), decision, ttfb_ms = await self._dispatch(
            req, policy, plan, call, record_success=False
        )
        return relay(upstream, first, self.health, decision.provider_id, ttfb_ms), decision

    async def _dispatch(
        self,
        req: ChatRequest,
        policy: Policy,
        plan: Plan | None,
        call: Call[T],
        *,
        record_success: bool,
    ) -> tuple[T, Decision, float]:
        cfg = self.config
        if plan is None:
            plan = self.prepare(req, policy)
        decision = plan.decision
        run = _Failover()
        for ranked in plan.candidates:
            model = ranked.model
            if run.tried >= cfg.max_attempts:
                break
            adapter = self._admit(model, run)
            if adapter is None:
                continue
            run.tried += 1
            target = Target(model, req.request_id, timeout_s=self._timeout(policy))
            outcome = await self._try_model(adapter, target, call, decision, run, cfg)
            if isinstance(outcome, ProviderError):
                self._after_failure(model, outcome, run, cfg)
                continue
            result, latency_ms = outcome
            if record_success:
                self.health.record_success(model.provider_id, latency_ms)
            self._finish(decision, plan, model, run)
            return result, decision, latency_ms
        raise exhausted(decision, run.skipped, run.skip_providers, self.health)

    def _admit(self, model: ModelConfig, run: _Failover) -> Adapter | None:
        """The adapter to try ``model`` with now, or None (and why) to skip it."""
        pid = model.provider_id
        if pid in run.skip_providers:
            run.skipped[model.id] = f"provider {pid} rate-limited during this request"
        elif model.max_context_tokens <= run.min_context:
            run.skipped[model.id] = "context not larger than a model that overflowed"
        elif (adapter := self.catalog.adapter(pid)) is None:
            run.skipped[model.id] = f"provider {pid} has no adapter"
        elif not self.health.acquire(pid):
            run.skipped[model.id] = self._unavailable(pid)
        else:
            return adapter
        return None

    def _timeout(self, policy: Policy) -> float:
        return min(self.timeout_s, policy.max_latency_ms / 1000.0)

    async def _try_model(
        self,
        adapter: Adapter,
        target: Target,
        call: Call[T],
        decision: Decision,
        run: _Failover,
        cfg: RoutingConfig,
    ) -> tuple[T, float] | ProviderError:
        """Call one model, retrying transient errors after each configured backoff."""
        model = target.model
        backoffs = cfg.transient_backoff_ms
        for retry in range(len(backoffs) + 1):
            started = self._clock()
            try:
                with self.tracing.attempt_span(model.id, model.provider_id):
                    self.tracing.inject(target.headers)
                    result = await guarded(lambda: call(adapter, target), target)
            except ProviderError as exc:
                latency_ms = (self._clock() - started) * 1000.0
                attempt = failed_attempt(model, exc, latency_ms)
                decision.attempts.append(attempt)
                self.health.record_failure(
                    model.provider_id, exc.error_class, exc.message, latency_ms
                )
                if not self._may_retry(exc, retry, len(backoffs), model.provider_id):
                    return exc
                attempt.backoff_ms = backoffs[retry]
                run.last_step = "retried-transient"
                await self._sleep(backoffs[retry] / 1000.0)
                continue
            latency_ms = (self._clock() - started) * 1000.0
            decision.attempts.append(Attempt(model.id, model.provider_id, latency_ms=latency_ms))
            return result, latency_ms
        raise AssertionError("unreachable: the last try returns")  # pragma: no cover

    def _may_retry(self, exc: ProviderError, retry: int, retries: int, provider_id: str) -> bool:
        # The failure just recorded may have tripped the breaker: then stop hammering it.
        return (
            exc.error_class == ErrorClass.TRANSIENT
            and retry < retries
            and self.health.acquire(provider_id)
        )

    def _after_failure(
        self, model: ModelConfig, exc: ProviderError, run: _Failover, cfg: RoutingConfig
    ) -> None:
        run.last_step = STEP.get(exc.error_class, "failover-fatal")
        if exc.error_class == ErrorClass.RATE_LIMITED:
            seconds = exc.retry_after if exc.retry_after is not None else cfg.rate_limit_cooldown_s
            self.health.cool_down(model.provider_id, seconds, "rate limited (429)")
            run.skip_providers.add(model.provider_id)
        elif exc.error_class == ErrorClass.CONTEXT_OVERFLOW:
            run.min_context = max(run.min_context, model.max_context_tokens)

    def _finish(self, decision: Decision, plan: Plan, model: ModelConfig, run: _Failover) -> None:
        failed = any(a.error_class is not None for a in decision.attempts)
        choose(decision, model, run.last_step if failed else _initial_reason(model, plan.hint))
        decision.estimated_cost_usd = estimate_cost(model, plan.input_tokens, plan.output_tokens)

    # -- what-if and introspection -------------------------------------------------------

    def simulate(
        self,
        *,
        mode: str | None = None,
        token_count: int = 1000,
        max_budget_usd: float | None = None,
        min_weight: int | None = None,
        model_hint: str | None = None,
        max_tokens: int | None = None,
    ) -> dict[str, Any]:
        """What routing would choose for a request of ``token_count`` input tokens."""
        cfg = self.config
        policy = self.policy(mode, max_budget_usd=max_budget_usd, min_weight=min_weight)
        req = ChatRequest(
            messages=[], model=model_hint, max_tokens=max_tokens, estimated_input_tokens=token_count
        )
        plan = self._plan(req, policy, cfg)
        d = plan.decision
        eligible = [
            {
                "model": r.model.id,
                "provider": r.model.provider_id,
                "score": round(r.score, 6),
                "estimated_cost_usd": estimate_cost(r.model, plan.input_tokens, plan.output_tokens),
                "components": {k: round(v, 6) for k, v in r.components.items()},
            }
            for r in plan.candidates
        ]
        return {
            "winner": d.model.id if d.model else None,
            "reason": d.reason or None,
            "eligible": eligible,
            "excluded": dict(d.excluded),
            "estimated_tokens": d.estimated_tokens,
            "policy": asdict(policy),
        }

    def describe_models(self) -> list[dict[str, Any]]:
        """Every routable model with its prices and its provider's live health."""
        out = []
        for m in self.catalog.routable():
            if m.labels.get("kind") == "embedding":
                continue
            h = self.health.state(m.provider_id)
            out.append(
                {
                    "id": m.id,
                    "provider": m.provider_id,
                    "weight": m.weight,
                    "max_context_tokens": m.max_context_tokens,
                    "input_per_1k": m.input_per_1k,
                    "output_per_1k": m.output_per_1k,
                    "health": h.state,
                    "available": h.available,
                    "cooldown_remaining_s": round(self.health.cooldown_remaining(m.provider_id), 3),
                    "expected_latency_ms": round(expected_latency_ms(m, self.health), 1),
                    "error_rate": round(h.error_rate, 4),
                }
            )
        return out


# -- helpers ---------------------------------------------------------------------------


def _check_policy(p: Policy) -> None:
    if not p.max_budget_usd >= 0:
        raise BadRequest("max_budget_usd must be 0 or more", code="bad_policy")
    if not p.max_latency_ms >= 1:
        raise BadRequest("max_latency_ms must be at least 1", code="bad_policy")
    if not 0 <= p.min_weight <= 10:
        raise BadRequest("min_weight must be from 0 to 10", code="bad_policy")


def _hint_first(ranked: list[Ranked], hint: ModelConfig | None) -> list[Ranked]:
    if hint is None:
        return ranked
    for i, r in enumerate(ranked):
        if r.model.id == hint.id:
            return [r, *ranked[:i], *ranked[i + 1 :]]
    return ranked


def _initial_reason(model: ModelConfig, hint: ModelConfig | None) -> str:
    if hint is not None and hint.id == model.id:
        return "model-hint"
    return f"routed-weight-{model.weight}"


async def open_first_chunk(
    upstream: AsyncIterator[Chunk],
) -> tuple[AsyncIterator[Chunk], Chunk | None]:
    """Await the first chunk (None for an empty stream); close ``upstream`` on failure."""
    try:
        return upstream, await anext(upstream)
    except StopAsyncIteration:
        return upstream, None
    except BaseException:
        await _aclose(upstream)
        raise


async def relay(
    upstream: AsyncIterator[Chunk],
    first: Chunk | None,
    health: HealthTracker,
    provider_id: str,
    ttfb_ms: float,
) -> AsyncIterator[Chunk]:
    """Yield ``first`` and the rest of ``upstream``, reporting the outcome to ``health``.

    A stream that ends, or that the client closes early, counts as a success with the
    time to first chunk as latency (a disconnect says nothing bad about the provider);
    one that raises counts as a failure. Either way the upstream iterator is closed.
    """
    failed = False
    try:
        if first is not None:
            yield first
            async for chunk in upstream:
                yield chunk
    except ProviderError as exc:
        failed = True
        health.record_failure(provider_id, exc.error_class, exc.message)
        raise
    except Exception as exc:
        failed = True
        health.record_failure(provider_id, ErrorClass.FATAL, f"stream error ({type(exc).__name__})")
        raise
    finally:
        if not failed:
            health.record_success(provider_id, ttfb_ms)
        await _aclose(upstream)


async def _aclose(it: AsyncIterator[Chunk]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        await aclose()
