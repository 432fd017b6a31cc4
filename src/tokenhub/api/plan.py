"""``POST /v1/plan`` (scope ``plan``): multi-call orchestration over the routing engine.

Body: the native ``/v1/chat`` envelope plus the plan's own top-level fields::

    {"request": {"messages": [...], "model_hint"?, "parameters"?},
     "policy": {"mode"?, "max_budget_usd"?, "max_latency_ms"?, "min_weight"?},
     "mode": "planning" | "adversarial" | "vote" | "refine",   (default planning)
     "iterations": 0-10, "voters": 2-7,
     "primary_model_id"?, "review_model_id"?, "primary_min_weight"?, "review_min_weight"?,
     "return_plan_only"?: bool, "output_schema"?: JSON Schema}

``policy.mode`` is the routing profile; when absent the plan mode's own profile is
used (planning → planning, adversarial → adversarial, refine → planning, vote →
high_confidence). ``request.model_hint`` is the primary model when
``primary_model_id`` is absent (an unknown hint is ignored, as on ``/v1/chat``; an
unknown ``primary_model_id`` or ``review_model_id`` is a 400). Answer::

    {"negotiated_model", "estimated_cost_usd", "cost_usd",
     "routing_reason": "<mode>-orchestration", "response": {...}, "steps": [...]}

Errors (OpenAI style, rendered by the app's ``TokenHubError`` handler): 400 for a bad
body, mode, iterations or a projected cost over ``max_budget_usd``; 401/403/429 from
``admit``; 502 when every model failed or the answer misses ``output_schema``.
"""

from __future__ import annotations

import inspect
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from tokenhub.api.native_codec import NativeRequest, parse_native_request
from tokenhub.api.validate import as_object, opt_bool, opt_int, opt_object, opt_str
from tokenhub.errors import BadRequest, TokenHubError, UpstreamFailed
from tokenhub.routing.engine import RoutingEngine
from tokenhub.routing.orchestration import (
    MAX_ITERATIONS,
    MAX_VOTERS,
    MIN_VOTERS,
    ORCHESTRATION_MODES,
    Orchestrator,
    PlanResult,
    PlanSpec,
    Step,
)
from tokenhub.types import ChatRequest, Outcome, Policy, Usage

SCOPE = "plan"
SURFACE = "plan"

Admit = Callable[[Request, str], Awaitable[Any]]
"""``(request, scope) -> principal``; raises Unauthorized / Forbidden / TooManyRequests."""

Record = Callable[[Outcome], Awaitable[None] | None]


class PlanBudget(Protocol):
    """The key-budget half of ``tokenhub.security.guard.Guard`` (which satisfies it)."""

    async def remaining_budget_usd(self, principal: Any) -> float | None: ...

    async def reserve(self, principal: Any, max_cost_usd: float) -> Any: ...

    async def settle(self, res: Any, cost_usd: float) -> None: ...

    async def release(self, res: Any) -> None: ...


@dataclass
class PlanBundle:
    """What the plan route needs, handed over by the app's lifespan."""

    orchestrator: Orchestrator
    engine: RoutingEngine
    admit: Admit
    record: Record | None = None  # one Outcome per request (Recorder.record fits)
    budget: PlanBudget | None = None  # caps the policy and holds the projected cost


def parse_plan_request(
    body: object, request_id: str, profiles: Any
) -> tuple[NativeRequest, PlanSpec]:
    """The envelope and the plan fields of a ``/v1/plan`` body (raises BadRequest)."""
    obj = as_object(body, "body")
    native = parse_native_request(obj, request_id, profiles)
    if native.chat.stream:
        raise BadRequest("request.stream: /v1/plan does not stream")
    spec = PlanSpec(
        mode=_mode(obj),
        iterations=_opt(opt_int(obj, "iterations", lo=0, hi=MAX_ITERATIONS), 1),
        voters=_opt(opt_int(obj, "voters", lo=MIN_VOTERS, hi=MAX_VOTERS), 3),
        primary_model_id=opt_str(obj, "primary_model_id"),
        review_model_id=opt_str(obj, "review_model_id"),
        primary_min_weight=opt_int(obj, "primary_min_weight", lo=0, hi=10),
        review_min_weight=opt_int(obj, "review_min_weight", lo=0, hi=10),
        return_plan_only=opt_bool(obj, "return_plan_only") or False,
        output_schema=opt_object(obj, "output_schema"),
    )
    spec.check()
    return native, spec


def _mode(obj: dict[str, Any]) -> str:
    mode = opt_str(obj, "mode")
    if mode is None:
        return "planning"
    if mode not in ORCHESTRATION_MODES:
        raise BadRequest(f"mode: must be one of {', '.join(ORCHESTRATION_MODES)}", code="bad_mode")
    return mode


def _opt(value: int | None, default: int) -> int:
    return default if value is None else value


def _request_id(request: Request) -> str:
    rid = request.headers.get("x-request-id", "")
    if 0 < len(rid) <= 128 and rid.isascii() and rid.isprintable():
        return rid
    return secrets.token_hex(12)


@dataclass
class _Exchange:
    """One plan request's facts, ending as its Outcome."""

    request_id: str
    started_at: float
    t0: float
    principal: Any = None
    mode: str = "planning"
    result: PlanResult | None = None
    error: TokenHubError | None = None
    steps: list[Step] = field(default_factory=list)  # filled as the plan runs
    status: int = 200
    error_class: str | None = None

    def outcome(self) -> Outcome:
        result, err = self.result, self.error
        model = result.model if result is not None else None
        decision = result.decision if result is not None else None
        if err is not None:
            decision = err.decision
        return Outcome(
            request_id=self.request_id,
            surface=SURFACE,
            started_at=self.started_at,
            status=self.status,
            latency_ms=(time.perf_counter() - self.t0) * 1000.0,
            mode=self.mode,
            model=model.id if model is not None else None,
            provider=model.provider_id if model is not None else None,
            api_key_id=getattr(self.principal, "id", None),
            usage=_usage(self.steps),
            cost_usd=_spent(self.steps),
            error_class=self.error_class,
            error=err.message[:300] if err is not None else None,
            reason=f"{result.mode}-orchestration" if result is not None else "",
            decision=decision,
        )

    def fail(self, err: TokenHubError, *, internal: bool = False) -> None:
        self.error, self.status = err, 500 if internal else err.status
        if internal:
            self.error_class = "internal"
        else:
            self.error_class = "client" if err.status < 500 else "upstream"


def _usage(steps: list[Step]) -> Usage:
    return Usage(
        sum(s.usage.prompt_tokens for s in steps), sum(s.usage.completion_tokens for s in steps)
    )


def _spent(steps: list[Step]) -> float:
    return sum(s.cost_usd for s in steps)


class PlanHandler:
    """Serves one ``/v1/plan`` request: admit, parse, project, reserve, run, record."""

    def __init__(self, get: Callable[[], PlanBundle]) -> None:
        self._get = get

    async def __call__(self, request: Request) -> Response:
        bundle = self._get()
        ex = _Exchange(_request_id(request), time.time(), time.perf_counter())
        try:
            body = await self._serve(bundle, ex, request)
        except TokenHubError as err:
            ex.fail(err)
            raise
        except Exception:
            ex.fail(UpstreamFailed("internal error"), internal=True)
            raise
        finally:
            await _record(bundle, ex)
        return Response(body, 200, {"x-request-id": ex.request_id}, media_type="application/json")

    async def _serve(self, bundle: PlanBundle, ex: _Exchange, request: Request) -> bytes:
        ex.principal = await bundle.admit(request, SCOPE)
        try:
            data = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise BadRequest("body: malformed JSON") from None
        engine, orchestrator = bundle.engine, bundle.orchestrator
        native, spec = parse_plan_request(data, ex.request_id, engine.config.profiles)
        policy = engine.policy(
            mode=native.mode or orchestrator.default_profile(spec.mode),
            max_budget_usd=native.max_budget_usd,
            max_latency_ms=native.max_latency_ms,
            min_weight=native.min_weight,
        )
        ex.mode = policy.mode
        await self._cap(bundle, ex, policy)
        result = await self._run(bundle, ex, spec, native.chat, policy)
        return orjson.dumps(result.to_dict())

    async def _cap(self, bundle: PlanBundle, ex: _Exchange, policy: Policy) -> None:
        if bundle.budget is None:
            return
        remaining = await bundle.budget.remaining_budget_usd(ex.principal)
        if remaining is not None:
            policy.max_budget_usd = min(policy.max_budget_usd, remaining)

    async def _run(
        self, bundle: PlanBundle, ex: _Exchange, spec: PlanSpec, chat: ChatRequest, policy: Policy
    ) -> PlanResult:
        orchestrator, budget = bundle.orchestrator, bundle.budget
        projection = orchestrator.project(spec, chat, policy)
        held = None if budget is None else await budget.reserve(ex.principal, projection.cost_usd)
        try:
            ex.result = await orchestrator.run(spec, chat, policy, projection, ex.steps)
        except BaseException:
            # Steps that answered before the failure were billed upstream: charge them.
            if budget is not None:
                spent = _spent(ex.steps)
                await (budget.settle(held, spent) if spent > 0 else budget.release(held))
            raise
        if budget is not None:
            await budget.settle(held, ex.result.cost_usd)
        return ex.result


async def _record(bundle: PlanBundle, ex: _Exchange) -> None:
    if bundle.record is None:
        return
    pending = bundle.record(ex.outcome())
    if inspect.isawaitable(pending):
        await pending


def plan_router(get: Callable[[], PlanBundle]) -> APIRouter:
    """The FastAPI router serving ``POST /v1/plan``."""
    router = APIRouter(tags=["public"])
    handler = PlanHandler(get)
    router.add_api_route(
        "/v1/plan",
        handler.__call__,
        methods=["POST"],
        summary="Multi-call orchestration: planning, adversarial, vote, refine",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )
    return router
