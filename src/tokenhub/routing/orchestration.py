"""Multi-call orchestration behind ``POST /v1/plan``: planning, adversarial, vote, refine.

Every model call goes through ``RoutingEngine.complete`` with a request built for its
step, so failover, health and per-call budgets work as for any chat request:

    planning     one call under the planning profile
    adversarial  plan → (critique by a review model → refine by the author), iterations times
    refine       plan → (self-review and rewrite by the author), iterations times
    vote         N voters on distinct models, then a judge picks the best answer

Roles: *primary* calls (plan, refine, revise, vote) hint ``primary_model_id`` (or the
request's own model hint) when given, else stick to the model that wrote the first
plan; *review* calls (critique, judge) hint ``review_model_id`` when given, else route
under the ``high_confidence`` profile. Each role has its own min weight.

Budget: before the first call the whole plan is projected (each planned call priced on
the model routing would pick for it, later calls with the earlier outputs in their
input) and refused with ``BadRequest`` (400) when it exceeds ``max_budget_usd``; a
request's own limit is a client error, not a rate limit (429 is for key budgets).
While running, each call's budget is what the plan has left.

Voters on distinct models: the engine has no exclusion parameter, so voters are taken
from the ranked candidates in order and each call hints its voter's model explicitly.
Failover may still land a failing voter on a model another voter used; such a
duplicate answer is dropped, as is a voter whose every attempt failed. The judge
failing, declaring a tie or answering without a usable number falls back to the
candidate of the highest-weight model (ties: lowest model id).

``output_schema`` goes through ``tokenhub.routing.shaping``: a system hint on every
primary call, then the final answer is validated with one repair turn on its model
(a ``repair`` step, not in the projection); still invalid is ``UpstreamFailed`` (502,
code ``output_schema_mismatch``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from tokenhub.errors import BadRequest, TokenHubError, UpstreamFailed
from tokenhub.routing import shaping
from tokenhub.routing.engine import RoutingEngine
from tokenhub.routing.scoring import estimate_cost
from tokenhub.types import (
    ChatRequest,
    Clock,
    Decision,
    Message,
    ModelConfig,
    Policy,
    Usage,
    monotonic,
)

ORCHESTRATION_MODES = ("planning", "adversarial", "vote", "refine")
MAX_ITERATIONS = 10
MIN_VOTERS, MAX_VOTERS = 2, 7

# The routing profile primary calls use when the client names none.
DEFAULT_PROFILES = {
    "planning": "planning",
    "adversarial": "adversarial",
    "refine": "planning",
    "vote": "high_confidence",
}
REVIEW_PROFILE = "high_confidence"

CRITIQUE_SYSTEM = (
    "You are a rigorous reviewer. Find the flaws, gaps, risks and wrong assumptions in "
    "the proposed answer. Be specific and concise; do not rewrite the answer."
)
CRITIQUE_PROMPT = "Task:\n{task}\n\nProposed answer:\n{plan}\n\nCritique this answer."
REFINE_PROMPT = (
    "A reviewer critiqued your answer:\n{critique}\n\n"
    "Rewrite your answer so that it addresses every valid point. Reply with the "
    "improved answer only."
)
SELF_REVIEW_PROMPT = (
    "Review your answer above critically: check it for errors, gaps and unclear steps. "
    "Then reply with the improved answer only."
)
JUDGE_SYSTEM = (
    "You are a strict judge. Several candidates answered the same task. Pick the best "
    "one. Reply with the number of the best candidate only."
)
JUDGE_PROMPT = "Task:\n{task}\n\n{candidates}\n\nWhich candidate is best? Reply with its number."


@dataclass(slots=True)
class PlanSpec:
    """What the client asked of one ``/v1/plan`` request, beyond the chat itself."""

    mode: str = "planning"
    iterations: int = 1
    voters: int = 3
    primary_model_id: str | None = None
    review_model_id: str | None = None
    primary_min_weight: int | None = None
    review_min_weight: int | None = None
    return_plan_only: bool = False
    output_schema: dict[str, Any] | None = None

    def check(self) -> None:
        """Raise ``BadRequest`` for a mode, count or schema out of range."""
        if self.mode not in ORCHESTRATION_MODES:
            raise BadRequest(
                f"mode: must be one of {', '.join(ORCHESTRATION_MODES)}", code="bad_mode"
            )
        if not 0 <= self.iterations <= MAX_ITERATIONS:
            raise BadRequest(f"iterations: must be from 0 to {MAX_ITERATIONS}")
        if not MIN_VOTERS <= self.voters <= MAX_VOTERS:
            raise BadRequest(f"voters: must be from {MIN_VOTERS} to {MAX_VOTERS}")
        for name in ("primary_min_weight", "review_min_weight"):
            weight = getattr(self, name)
            if weight is not None and not 0 <= weight <= 10:
                raise BadRequest(f"{name}: must be from 0 to 10")
        if self.output_schema is not None:
            shaping.check_schema(self.output_schema, "output_schema")


@dataclass(slots=True)
class Step:
    """One model call of a plan."""

    role: str  # plan | critique | refine | revise | vote | judge
    model: str
    provider: str
    cost_usd: float
    latency_ms: float
    usage: Usage

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "model": self.model,
            "provider": self.provider,
            "cost_usd": self.cost_usd,
            "latency_ms": round(self.latency_ms, 1),
            "usage": {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
            },
        }


@dataclass(slots=True)
class Projection:
    """The priced call list of a plan before it runs."""

    calls: list[tuple[str, str, float]]  # (role, model id, estimated USD)
    cost_usd: float


@dataclass(slots=True)
class PlanResult:
    """A finished plan: the final text, the mode-specific response and every step."""

    mode: str
    text: str
    model: ModelConfig | None
    response: dict[str, Any]
    steps: list[Step]
    estimated_cost_usd: float
    decision: Decision | None = None  # the routing decision of the final answer's call

    @property
    def cost_usd(self) -> float:
        return sum(s.cost_usd for s in self.steps)

    @property
    def usage(self) -> Usage:
        return Usage(
            sum(s.usage.prompt_tokens for s in self.steps),
            sum(s.usage.completion_tokens for s in self.steps),
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``/v1/plan`` response body."""
        return {
            "negotiated_model": self.model.id if self.model is not None else None,
            "estimated_cost_usd": self.estimated_cost_usd,
            "cost_usd": self.cost_usd,
            "routing_reason": f"{self.mode}-orchestration",
            "response": self.response,
            "steps": [s.to_dict() for s in self.steps],
        }


@dataclass(slots=True)
class _Answer:
    text: str
    model: ModelConfig
    decision: Decision
    step: Step


@dataclass(slots=True)
class _Run:
    """State of one plan while it runs."""

    spec: PlanSpec
    base: ChatRequest
    primary: Policy
    review: Policy
    budget: float
    steps: list[Step] = field(default_factory=list)
    primary_hint: str | None = None
    review_hint: str | None = None

    @property
    def left(self) -> float:
        return max(0.0, self.budget - sum(s.cost_usd for s in self.steps))

    def keep(self, answer: _Answer) -> _Answer:
        self.steps.append(answer.step)
        return answer


class Orchestrator:
    """Runs the multi-call modes of ``/v1/plan`` on top of a routing engine."""

    def __init__(self, engine: RoutingEngine, *, clock: Clock = monotonic) -> None:
        self.engine = engine
        self._clock = clock

    def default_profile(self, mode: str) -> str | None:
        """The routing profile for ``mode``'s primary calls, if the config has it."""
        profile = DEFAULT_PROFILES.get(mode)
        return profile if profile in self.engine.config.profiles else None

    # -- projection ------------------------------------------------------------------

    def project(self, spec: PlanSpec, base: ChatRequest, policy: Policy) -> Projection:
        """Price every planned call; ``BadRequest`` when the sum exceeds the budget."""
        spec.check()
        self._check_models(spec)
        run = self._start(spec, base, policy)
        calls = self._planned_calls(run)
        total = sum(cost for _, _, cost in calls)
        if total > policy.max_budget_usd:
            raise BadRequest(
                f"projected cost ${total:.6f} exceeds max_budget_usd ${policy.max_budget_usd:.6f}",
                code="plan_over_budget",
                details={"projected_cost_usd": total, "calls": [list(c) for c in calls]},
            )
        return Projection(calls, total)

    def _check_models(self, spec: PlanSpec) -> None:
        # Unlike a chat model hint, a model the client names for a role must exist.
        for name in ("primary_model_id", "review_model_id"):
            model_id = getattr(spec, name)
            if model_id is not None and self.engine.catalog.find(model_id) is None:
                raise BadRequest(f"{name}: unknown model {model_id!r}", code="unknown_model")

    def _planned_calls(self, run: _Run) -> list[tuple[str, str, float]]:
        spec = run.spec
        plan = self.engine.prepare(self._request(run, "plan", run.base.messages), run.primary)
        tin, tout = plan.input_tokens, plan.output_tokens
        if spec.mode == "vote":
            voters = self._voter_models(run)
            calls = [("vote", m.id, estimate_cost(m, tin, tout)) for m in voters]
            if len(voters) > 1:
                judge = self._review_model(run)
                cost = estimate_cost(judge, tin + len(voters) * tout, tout)
                calls.append(("judge", judge.id, cost))
            return calls
        author = _chosen(plan.decision)
        calls = [("plan", author.id, estimate_cost(author, tin, tout))]
        iterations = spec.iterations if spec.mode in ("adversarial", "refine") else 0
        reviewer = self._review_model(run) if spec.mode == "adversarial" and iterations else None
        for _ in range(iterations):
            if reviewer is not None:
                calls.append(("critique", reviewer.id, estimate_cost(reviewer, tin + tout, tout)))
                calls.append(("refine", author.id, estimate_cost(author, tin + 2 * tout, tout)))
            else:
                calls.append(("revise", author.id, estimate_cost(author, tin + tout, tout)))
        return calls

    def _review_model(self, run: _Run) -> ModelConfig:
        req = self._request(run, "review", run.base.messages, review=True)
        return _chosen(self.engine.prepare(req, run.review).decision)

    def _voter_models(self, run: _Run) -> list[ModelConfig]:
        req = self._request(run, "vote", run.base.messages)
        ranked = self.engine.prepare(req, run.primary).decision.ranked
        models = self.engine.catalog.models
        picked = [models[mid] for mid, _ in ranked if mid in models]
        return picked[: run.spec.voters]

    # -- running -------------------------------------------------------------------------

    async def run(
        self,
        spec: PlanSpec,
        base: ChatRequest,
        policy: Policy,
        projection: Projection | None = None,
        steps: list[Step] | None = None,
    ) -> PlanResult:
        """Run the plan (projecting it first unless ``projection`` is given).

        ``steps``, when given, receives every answered step as it happens, so a caller
        still knows what a plan that failed halfway has spent.
        """
        if projection is None:
            projection = self.project(spec, base, policy)
        run = self._start(spec, base, policy)
        if steps is not None:
            run.steps = steps
        if spec.mode == "vote":
            text, final, response = await self._vote(run)
        elif spec.mode == "adversarial":
            text, final, response = await self._adversarial(run)
        elif spec.mode == "refine":
            text, final, response = await self._refine(run)
        else:
            final = await self._first_plan(run)
            text, response = final.text, {"plan": final.text}
        if spec.output_schema is not None:
            text = await self._shape(run, final, text, response)
        if spec.return_plan_only:
            response = {"plan": text}
        return PlanResult(
            spec.mode, text, final.model, response, run.steps, projection.cost_usd, final.decision
        )

    async def _shape(self, run: _Run, final: _Answer, text: str, response: dict[str, Any]) -> str:
        """Fit the final answer to ``output_schema`` (one repair turn on its model)."""
        fmt = shaping.OutputFormat(type="json", schema=run.spec.output_schema)

        async def repair(bad: str, errors: list[str]) -> str:
            messages = shaping.repair_messages(run.base.messages, bad, errors)
            try:
                fixed = await self._call(run, "repair", messages, hint=final.model.id)
            except TokenHubError:
                return bad  # the repair could not run: the answer stays as it was
            return run.keep(fixed).text

        try:
            shaped = await shaping.shape(text, fmt, repair)
        except UpstreamFailed as exc:
            raise UpstreamFailed(
                "final answer does not match output_schema",
                code="output_schema_mismatch",
                details=exc.details,
            ) from None
        response["answer" if run.spec.mode == "vote" else "plan"] = shaped.text
        response["output"] = shaped.parsed
        response["repaired"] = shaped.repaired
        return shaped.text

    def _start(self, spec: PlanSpec, base: ChatRequest, policy: Policy) -> _Run:
        primary = replace(
            policy,
            min_weight=_or(spec.primary_min_weight, policy.min_weight),
        )
        review_mode = policy.mode
        if spec.review_model_id is None and REVIEW_PROFILE in self.engine.config.profiles:
            review_mode = REVIEW_PROFILE
        review = replace(
            policy, mode=review_mode, min_weight=_or(spec.review_min_weight, policy.min_weight)
        )
        return _Run(
            spec,
            base,
            primary,
            review,
            policy.max_budget_usd,
            primary_hint=spec.primary_model_id or base.model,
            review_hint=spec.review_model_id,
        )

    async def _first_plan(self, run: _Run) -> _Answer:
        answer = run.keep(await self._call(run, "plan", run.base.messages))
        # Later primary calls go back to the author unless the client named a model.
        run.primary_hint = run.primary_hint or answer.model.id
        return answer

    async def _adversarial(self, run: _Run) -> tuple[str, _Answer, dict[str, Any]]:
        current = await self._first_plan(run)
        critiques: list[str] = []
        task = render_task(run.base.messages)
        for _ in range(run.spec.iterations):
            prompt = CRITIQUE_PROMPT.format(task=task, plan=current.text)
            messages = [Message("system", CRITIQUE_SYSTEM), Message("user", prompt)]
            critique = run.keep(await self._call(run, "critique", messages, review=True))
            run.review_hint = run.review_hint or critique.model.id
            critiques.append(critique.text)
            follow_up = REFINE_PROMPT.format(critique=critique.text)
            current = run.keep(await self._call(run, "refine", _continue(run, current, follow_up)))
        response = {"plan": current.text, "critiques": critiques, "iterations": len(critiques)}
        return current.text, current, response

    async def _refine(self, run: _Run) -> tuple[str, _Answer, dict[str, Any]]:
        current = await self._first_plan(run)
        revisions: list[str] = []
        for _ in range(run.spec.iterations):
            messages = _continue(run, current, SELF_REVIEW_PROMPT)
            current = run.keep(await self._call(run, "revise", messages))
            revisions.append(current.text)
        return current.text, current, {"plan": current.text, "revisions": revisions}

    async def _vote(self, run: _Run) -> tuple[str, _Answer, dict[str, Any]]:
        candidates = await self._voters(run)
        judge = await self._judge(run, candidates)
        winner = candidates[judge["choice"] - 1]
        response = {
            "answer": winner.text,
            "candidates": [{"model": c.model.id, "text": c.text} for c in candidates],
            "judge": judge,
        }
        return winner.text, winner, response

    async def _voters(self, run: _Run) -> list[_Answer]:
        voters = self._voter_models(run)
        messages = run.base.messages
        results = await asyncio.gather(
            *(self._call(run, "vote", messages, hint=m.id) for m in voters),
            return_exceptions=True,
        )
        candidates: list[_Answer] = []
        errors: list[TokenHubError] = []
        for result in results:
            if isinstance(result, TokenHubError):
                errors.append(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                run.keep(result)
                if all(c.model.id != result.model.id for c in candidates):
                    candidates.append(result)
        if not candidates:
            raise errors[0]
        return candidates

    async def _judge(self, run: _Run, candidates: list[_Answer]) -> dict[str, Any]:
        verdict: dict[str, Any] = {"model": None, "raw": "", "choice": 1, "fallback": False}
        if len(candidates) < 2:
            return verdict
        listing = "\n\n".join(f"Candidate {i}:\n{c.text}" for i, c in enumerate(candidates, 1))
        prompt = JUDGE_PROMPT.format(task=render_task(run.base.messages), candidates=listing)
        messages = [Message("system", JUDGE_SYSTEM), Message("user", prompt)]
        try:
            judged = run.keep(await self._call(run, "judge", messages, review=True))
        except TokenHubError as exc:
            verdict["error"] = exc.message
            judged = None
        if judged is not None:
            verdict["model"], verdict["raw"] = judged.model.id, judged.text
            choice = parse_choice(judged.text, len(candidates))
            if choice is not None:
                verdict["choice"] = choice
                return verdict
        verdict["choice"] = fallback_choice([c.model for c in candidates])
        verdict["fallback"] = True
        return verdict

    async def _call(
        self,
        run: _Run,
        role: str,
        messages: list[Message],
        *,
        review: bool = False,
        hint: str | None = None,
    ) -> _Answer:
        req = self._request(run, role, messages, review=review, hint=hint)
        policy = replace(run.review if review else run.primary, max_budget_usd=run.left)
        started = self._clock()
        resp, decision = await self.engine.complete(req, policy)
        latency_ms = (self._clock() - started) * 1000.0
        model = _chosen(decision)
        step = Step(
            role, model.id, model.provider_id, model.cost(resp.usage), latency_ms, resp.usage
        )
        return _Answer(resp.content or "", model, decision, step)

    def _request(
        self,
        run: _Run,
        role: str,
        messages: Sequence[Message],
        *,
        review: bool = False,
        hint: str | None = None,
    ) -> ChatRequest:
        """The chat request of one step: the client's parameters, this step's messages."""
        base = run.base
        msgs = base.messages if messages is base.messages else list(messages)
        schema = run.spec.output_schema
        if schema is not None and not review:
            msgs = shaping.with_hint(msgs, shaping.OutputFormat(type="json", schema=schema))
        req = replace(
            base,
            messages=msgs,
            model=hint or (run.review_hint if review else run.primary_hint),
            stream=False,
            stream_usage=False,
            raw=None,
            request_id=f"{base.request_id}-{role}-{len(run.steps) + 1}",
        )
        if msgs is not base.messages:
            req.estimated_input_tokens = None  # the client's estimate was for its own messages
        if review:
            req.tools = req.tool_choice = req.response_format = None
        return req


# -- helpers ----------------------------------------------------------------------------


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def _chosen(decision: Decision) -> ModelConfig:
    if decision.model is None:  # the engine raises instead of answering without a model
        raise UpstreamFailed("routing chose no model")
    return decision.model


def _continue(run: _Run, current: _Answer, follow_up: str) -> list[Message]:
    """The conversation so far, the author's answer, and the next instruction."""
    return [*run.base.messages, Message("assistant", current.text), Message("user", follow_up)]


def render_task(messages: Sequence[Message]) -> str:
    """The client's conversation as plain text for review prompts."""
    if len(messages) == 1:
        return messages[0].text()
    return "\n\n".join(f"{m.role}: {m.text()}" for m in messages if m.text())


_JSON_KEYS = ("choice", "best", "candidate", "winner", "answer")
_TIE = re.compile(r"\b(tie|tied|equally|draw)\b", re.IGNORECASE)
_EXPLICIT = re.compile(r"(?:candidate|option|answer)\s*#?\s*(\d+)|#\s*(\d+)", re.IGNORECASE)
_INTEGER = re.compile(r"\d+")
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


def parse_choice(raw: str, count: int) -> int | None:
    """The candidate number (1-based) a judge's answer names, or None for a tie or junk.

    Understands JSON (``{"choice": 2}`` or a bare ``2``), ``Candidate 2``, ``#2`` and,
    failing those, the first integer from 1 to ``count``. A declared tie is None.
    """
    text = _FENCE.sub("", raw.strip())
    from_json = _json_choice(text)
    if from_json is not None:
        return from_json if 1 <= from_json <= count else None
    if _TIE.search(text):
        return None
    for match in _EXPLICIT.finditer(text):
        number = int(match.group(1) or match.group(2))
        if 1 <= number <= count:
            return number
    for match in _INTEGER.finditer(text):
        number = int(match.group())
        if 1 <= number <= count:
            return number
    return None


def _json_choice(text: str) -> int | None:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if isinstance(value, dict):
        value = next((value[k] for k in _JSON_KEYS if k in value), None)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def fallback_choice(models: Sequence[ModelConfig]) -> int:
    """The 1-based candidate whose model has the highest weight (ties: lowest id)."""
    best = min(range(len(models)), key=lambda i: (-models[i].weight, models[i].id))
    return best + 1
