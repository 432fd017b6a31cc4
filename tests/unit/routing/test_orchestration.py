"""Orchestrator: planning, adversarial, refine and vote over a scripted routing engine."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tests.unit.routing.fakes import FakeClock, RecordingSleep
from tokenhub.errors import BadRequest, NoEligibleModel, ProviderError, UpstreamFailed
from tokenhub.observe.health import HealthTracker
from tokenhub.routing.catalog import Catalog
from tokenhub.routing.config import RoutingConfig
from tokenhub.routing.engine import RoutingEngine
from tokenhub.routing.orchestration import (
    CRITIQUE_SYSTEM,
    JUDGE_SYSTEM,
    SELF_REVIEW_PROMPT,
    Orchestrator,
    PlanSpec,
    Step,
)
from tokenhub.types import (
    ChatRequest,
    ChatResponse,
    Dialect,
    ErrorClass,
    Message,
    ModelConfig,
    Policy,
    ProviderConfig,
    Target,
    Usage,
)

A = ModelConfig("alpha", "pa", weight=9, input_per_1k=0.001, output_per_1k=0.002)
B = ModelConfig("beta", "pb", weight=7, input_per_1k=0.0005, output_per_1k=0.001)
C = ModelConfig("gamma", "pc", weight=5, input_per_1k=0.0001, output_per_1k=0.0002)


@dataclass
class Script:
    """Per-model answers (text or error) shared by every adapter of a rig."""

    answers: dict[str, list[str | ProviderError]] = field(default_factory=dict)
    calls: list[tuple[str, ChatRequest]] = field(default_factory=list)

    def requests_to(self, model_id: str) -> list[ChatRequest]:
        return [req for mid, req in self.calls if mid == model_id]


class PlanAdapter:
    """Answers from the rig's script and remembers every request it got."""

    dialect = Dialect.NONE

    def __init__(self, config: ProviderConfig, script: Script, clock: FakeClock) -> None:
        self.config = config
        self.script = script
        self.clock = clock

    async def complete(self, req: ChatRequest, target: Target) -> ChatResponse:
        mid = target.model.id
        self.script.calls.append((mid, req))
        self.clock.advance(0.25)
        queue = self.script.answers.get(mid)
        step = queue.pop(0) if queue else f"answer from {mid}"
        if isinstance(step, ProviderError):
            raise step
        return ChatResponse(id="r", model=mid, content=step, usage=Usage(100, 50))

    def stream(self, req: ChatRequest, target: Target):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    async def list_models(self) -> list[str]:
        return []

    async def close(self) -> None:
        return None


@dataclass
class Rig:
    engine: RoutingEngine
    orchestrator: Orchestrator
    script: Script
    clock: FakeClock


async def make_rig(models: list[ModelConfig] | None = None) -> Rig:
    models = models or [A, B, C]
    clock, script = FakeClock(), Script()
    catalog = Catalog(lambda cfg: PlanAdapter(cfg, script, clock))
    for pid in dict.fromkeys(m.provider_id for m in models):
        await catalog.set_provider(ProviderConfig(id=pid, type="scripted"))
    for m in models:
        catalog.set_model(m)
    engine = RoutingEngine(
        catalog,
        HealthTracker(clock=clock),
        RoutingConfig(transient_backoff_ms=()),
        clock=clock,
        sleep=RecordingSleep(clock),
    )
    return Rig(engine, Orchestrator(engine, clock=clock), script, clock)


@pytest.fixture
async def rig() -> Rig:
    return await make_rig()


def task(text: str = "Plan a product launch") -> ChatRequest:
    return ChatRequest(messages=[Message("user", text)], request_id="req-1")


def policy(mode: str = "planning", budget: float = 1.0, min_weight: int = 0) -> Policy:
    return Policy(mode=mode, max_budget_usd=budget, min_weight=min_weight)


def fatal() -> ProviderError:
    return ProviderError(ErrorClass.FATAL, "boom", status=500)


# -- planning --------------------------------------------------------------------------


async def test_planning_is_one_call_with_plan_response(rig: Rig) -> None:
    """Planning makes one call and answers {plan} with the planning routing reason."""
    result = await rig.orchestrator.run(PlanSpec(), task(), policy())
    body = result.to_dict()
    assert len(rig.script.calls) == 1
    model = rig.script.calls[0][0]
    assert body["response"] == {"plan": f"answer from {model}"}
    assert body["routing_reason"] == "planning-orchestration"
    assert body["negotiated_model"] == model
    assert [s["role"] for s in body["steps"]] == ["plan"]


async def test_planning_honours_primary_model_id(rig: Rig) -> None:
    """primary_model_id is hinted, so the named model writes the plan."""
    result = await rig.orchestrator.run(PlanSpec(primary_model_id="gamma"), task(), policy())
    assert rig.script.calls[0][0] == "gamma"
    assert result.model is not None and result.model.id == "gamma"


async def test_request_model_hint_is_the_primary_model(rig: Rig) -> None:
    """Without primary_model_id the request's own model hint writes the plan."""
    base = task()
    base.model = "beta"
    await rig.orchestrator.run(PlanSpec(mode="refine", iterations=1), base, policy())
    assert [mid for mid, _ in rig.script.calls] == ["beta", "beta"]


async def test_unknown_role_model_is_a_bad_request(rig: Rig) -> None:
    """A primary_model_id or review_model_id not in the catalog is a 400."""
    with pytest.raises(BadRequest, match="review_model_id: unknown model 'nope'"):
        await rig.orchestrator.run(PlanSpec(review_model_id="nope"), task(), policy())
    with pytest.raises(BadRequest, match="primary_model_id"):
        rig.orchestrator.project(PlanSpec(primary_model_id="nope"), task(), policy())
    assert rig.script.calls == []


async def test_step_records_cost_latency_and_provider(rig: Rig) -> None:
    """Each step carries model, provider, model.cost(usage) and the call's latency."""
    result = await rig.orchestrator.run(PlanSpec(primary_model_id="beta"), task(), policy())
    step = result.steps[0]
    assert (step.model, step.provider) == ("beta", "pb")
    assert step.cost_usd == pytest.approx(B.cost(Usage(100, 50)))
    assert step.latency_ms == pytest.approx(250.0)
    assert result.cost_usd == pytest.approx(step.cost_usd)


async def test_every_model_failing_is_upstream_failed(rig: Rig) -> None:
    """When every model fails the plan raises UpstreamFailed (a 502)."""
    for m in ("alpha", "beta", "gamma"):
        rig.script.answers[m] = [fatal()]
    with pytest.raises(UpstreamFailed):
        await rig.orchestrator.run(PlanSpec(), task(), policy())


# -- adversarial -----------------------------------------------------------------------


async def test_adversarial_critiques_and_refines_each_iteration(rig: Rig) -> None:
    """Adversarial runs plan, then critique and refine per iteration, keeping critiques."""
    rig.script.answers = {
        "gamma": ["plan v1", "plan v2", "plan v3"],
        "alpha": ["critique 1", "critique 2"],
    }
    spec = PlanSpec(
        mode="adversarial", iterations=2, primary_model_id="gamma", review_model_id="alpha"
    )
    result = await rig.orchestrator.run(spec, task(), policy("adversarial"))
    assert [s.role for s in result.steps] == ["plan", "critique", "refine", "critique", "refine"]
    assert result.response == {
        "plan": "plan v3",
        "critiques": ["critique 1", "critique 2"],
        "iterations": 2,
    }
    first_critique = rig.script.requests_to("alpha")[0]
    assert first_critique.messages[0].content == CRITIQUE_SYSTEM
    assert "plan v1" in first_critique.messages[1].text()
    refine = rig.script.requests_to("gamma")[1]
    assert refine.messages[-2].content == "plan v1"
    assert "critique 1" in refine.messages[-1].text()


async def test_adversarial_review_defaults_to_high_confidence_and_min_weight(rig: Rig) -> None:
    """Without review_model_id the critique is routed high_confidence above review_min_weight."""
    spec = PlanSpec(mode="adversarial", iterations=1, primary_model_id="gamma", review_min_weight=8)
    result = await rig.orchestrator.run(spec, task(), policy("adversarial"))
    critique = next(s for s in result.steps if s.role == "critique")
    assert critique.model == "alpha"
    review_decision = rig.engine.plan(task(), policy("high_confidence", min_weight=8))
    assert review_decision.model is not None and review_decision.model.id == "alpha"


async def test_adversarial_refine_goes_back_to_the_author(rig: Rig) -> None:
    """Without primary_model_id, refine calls hint the model that wrote the first plan."""
    result = await rig.orchestrator.run(
        PlanSpec(mode="adversarial", iterations=1), task(), policy("adversarial")
    )
    plan, _, refine = result.steps
    assert refine.model == plan.model
    assert rig.script.calls[2][1].model == plan.model


async def test_adversarial_with_zero_iterations_is_just_the_plan(rig: Rig) -> None:
    """iterations=0 gives the first plan with no critiques."""
    result = await rig.orchestrator.run(
        PlanSpec(mode="adversarial", iterations=0), task(), policy()
    )
    assert len(result.steps) == 1
    assert result.response["critiques"] == [] and result.response["iterations"] == 0


async def test_failed_step_midway_leaves_earlier_steps_in_the_list(rig: Rig) -> None:
    """A plan failing halfway still reports the steps that answered, for billing."""
    rig.script.answers = {"alpha": [fatal()], "beta": [fatal()], "gamma": ["v1", fatal()]}
    steps: list[Step] = []
    spec = PlanSpec(mode="adversarial", iterations=1, primary_model_id="gamma")
    with pytest.raises(UpstreamFailed):
        await rig.orchestrator.run(spec, task(), policy(), steps=steps)
    assert [s.role for s in steps] == ["plan"]


# -- refine ----------------------------------------------------------------------------


async def test_refine_self_reviews_each_iteration(rig: Rig) -> None:
    """Refine asks the author to review its own answer, once per iteration."""
    rig.script.answers = {"beta": ["draft", "better", "best"]}
    spec = PlanSpec(mode="refine", iterations=2, primary_model_id="beta")
    result = await rig.orchestrator.run(spec, task(), policy())
    assert result.response == {"plan": "best", "revisions": ["better", "best"]}
    assert [s.role for s in result.steps] == ["plan", "revise", "revise"]
    second = rig.script.requests_to("beta")[2]
    assert [m.role for m in second.messages] == ["user", "assistant", "user"]
    assert second.messages[1].content == "better"
    assert second.messages[2].content == SELF_REVIEW_PROMPT


# -- vote --------------------------------------------------------------------------------


async def test_vote_uses_distinct_models_and_the_judges_pick(rig: Rig) -> None:
    """Vote asks each voter on its own model, then the judge's 'Candidate 2' wins."""
    rig.script.answers = {"alpha": ["A says", "Candidate 2 is best."], "beta": ["B says"]}
    spec = PlanSpec(mode="vote", voters=3, review_model_id="alpha")
    result = await rig.orchestrator.run(spec, task(), policy("high_confidence"))
    candidates = result.response["candidates"]
    assert len({c["model"] for c in candidates}) == 3
    assert result.response["answer"] == candidates[1]["text"]
    judge = result.response["judge"]
    assert judge == {
        "model": "alpha",
        "raw": "Candidate 2 is best.",
        "choice": 2,
        "fallback": False,
    }
    assert result.model is not None and result.model.id == candidates[1]["model"]
    judge_req = rig.script.calls[-1][1]
    assert judge_req.messages[0].content == JUDGE_SYSTEM
    assert "Candidate 3:" in judge_req.messages[1].text()


async def test_vote_unparsable_judge_falls_back_to_heaviest_model(rig: Rig) -> None:
    """A judge answer with no usable number picks the highest-weight model's candidate."""
    rig.script.answers = {"alpha": ["A says", "They are all fine, really."]}
    spec = PlanSpec(mode="vote", voters=3, review_model_id="alpha")
    result = await rig.orchestrator.run(spec, task(), policy("high_confidence"))
    judge = result.response["judge"]
    assert judge["fallback"] is True and judge["raw"] == "They are all fine, really."
    assert result.response["answer"] == "A says"
    assert result.model is not None and result.model.id == "alpha"


async def test_vote_declared_tie_falls_back_with_ties_by_model_id() -> None:
    """A judge declaring a tie falls back; equal weights break by the lowest model id."""
    zed = ModelConfig("zed", "pz", weight=6)
    ann = ModelConfig("ann", "pn", weight=6)
    rig = await make_rig([zed, ann])
    rig.script.answers = {"zed": ["Z says", "It's a tie between 1 and 2"], "ann": ["N says"]}
    spec = PlanSpec(mode="vote", voters=2, review_model_id="zed")
    result = await rig.orchestrator.run(spec, task(), policy("normal"))
    assert result.response["judge"]["fallback"] is True
    assert result.response["answer"] == "N says"


async def test_vote_drops_voters_that_failed(rig: Rig) -> None:
    """A voter whose model fails and fails over onto a used model is dropped."""
    rig.script.answers = {"gamma": [fatal()]}
    spec = PlanSpec(mode="vote", voters=3, review_model_id="alpha")
    result = await rig.orchestrator.run(spec, task(), policy("high_confidence"))
    models = [c["model"] for c in result.response["candidates"]]
    assert "gamma" not in models
    assert len(models) == len(set(models)) >= 1


async def test_vote_judge_failure_falls_back(rig: Rig) -> None:
    """When the judge's call fails the fallback choice answers and the error is shown."""
    rig.script.answers = {
        "alpha": ["A says", fatal()],
        "beta": ["B says", fatal()],
        "gamma": [fatal()],
    }
    spec = PlanSpec(mode="vote", voters=2, review_model_id="beta")
    result = await rig.orchestrator.run(spec, task(), policy("high_confidence"))
    judge = result.response["judge"]
    assert judge["fallback"] is True and judge["model"] is None and "error" in judge
    assert result.response["answer"] == "A says"


async def test_vote_all_voters_failing_raises(rig: Rig) -> None:
    """When no voter answers the plan fails with UpstreamFailed."""
    rig.script.answers = {m: [fatal()] * 3 for m in ("alpha", "beta", "gamma")}
    with pytest.raises(UpstreamFailed):
        await rig.orchestrator.run(PlanSpec(mode="vote"), task(), policy("high_confidence"))


# -- budget and bounds ------------------------------------------------------------------


async def test_projected_cost_over_budget_is_refused_before_any_call(rig: Rig) -> None:
    """A plan whose projected cost exceeds max_budget_usd is a 400 and calls nothing."""
    spec = PlanSpec(mode="adversarial", iterations=10, primary_model_id="alpha")
    one = rig.orchestrator.project(PlanSpec(primary_model_id="alpha"), task(), policy())
    with pytest.raises(BadRequest, match="projected cost") as info:
        await rig.orchestrator.run(spec, task(), policy(budget=one.cost_usd * 5))
    assert info.value.status == 400
    assert rig.script.calls == []


async def test_projection_counts_every_planned_call(rig: Rig) -> None:
    """The projection lists plan + (critique, refine) per iteration, and voters + judge."""
    adv = rig.orchestrator.project(
        PlanSpec(mode="adversarial", iterations=3), task(), policy("adversarial")
    )
    assert [r for r, _, _ in adv.calls] == ["plan"] + ["critique", "refine"] * 3
    vote = rig.orchestrator.project(PlanSpec(mode="vote", voters=3), task(), policy())
    assert [r for r, _, _ in vote.calls] == ["vote", "vote", "vote", "judge"]
    assert len({m for r, m, _ in vote.calls if r == "vote"}) == 3
    assert vote.cost_usd == pytest.approx(sum(c for _, _, c in vote.calls))


async def test_primary_min_weight_excluding_everything_is_no_eligible_model(rig: Rig) -> None:
    """A primary_min_weight no model meets fails as NoEligibleModel."""
    with pytest.raises(NoEligibleModel):
        await rig.orchestrator.run(PlanSpec(primary_min_weight=10), task(), policy())


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"iterations": 11}, "iterations"),
        ({"iterations": -1}, "iterations"),
        ({"mode": "debate"}, "mode"),
        ({"voters": 1}, "voters"),
        ({"voters": 8}, "voters"),
        ({"review_min_weight": 11}, "review_min_weight"),
        ({"output_schema": {"type": "nonsense"}}, "output_schema"),
    ],
)
def test_bad_spec_is_a_bad_request(fields: dict[str, object], problem: str) -> None:
    """Out-of-range iterations, voters, weights, unknown modes and bad schemas are 400s."""
    with pytest.raises(BadRequest, match=problem):
        PlanSpec(**fields).check()  # type: ignore[arg-type]


def test_iteration_bounds_are_inclusive() -> None:
    """iterations 0 and 10 are both accepted."""
    PlanSpec(iterations=0).check()
    PlanSpec(iterations=10).check()
    assert PlanSpec(iterations=10).iterations == 10


# -- output shaping ------------------------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"steps": {"type": "array"}}, "required": ["steps"]}


async def test_output_schema_valid_answer_is_parsed(rig: Rig) -> None:
    """A final answer matching output_schema is returned parsed under response.output."""
    rig.script.answers = {"alpha": ['```json\n{"steps": ["a", "b"]}\n```']}
    spec = PlanSpec(primary_model_id="alpha", output_schema=SCHEMA)
    result = await rig.orchestrator.run(spec, task(), policy())
    assert result.response["output"] == {"steps": ["a", "b"]}
    assert result.response["repaired"] is False
    hints = [m.text() for m in rig.script.calls[0][1].messages if m.role == "system"]
    assert any("JSON Schema" in h for h in hints)


async def test_output_schema_mismatch_is_upstream_failed(rig: Rig) -> None:
    """A final answer that misses output_schema is a 502 listing the problems."""
    rig.script.answers = {"alpha": ['{"stages": []}', '{"stages": [1]}']}
    spec = PlanSpec(primary_model_id="alpha", output_schema=SCHEMA)
    with pytest.raises(UpstreamFailed, match="output_schema") as info:
        await rig.orchestrator.run(spec, task(), policy())
    assert info.value.code == "output_schema_mismatch"
    assert info.value.details is not None and "steps" in " ".join(info.value.details["errors"])
    assert [mid for mid, _ in rig.script.calls] == ["alpha", "alpha"]


async def test_output_schema_gets_one_repair_turn(rig: Rig) -> None:
    """An answer missing the schema gets one repair call on its model, billed as a step."""
    rig.script.answers = {"beta": ["no json here", '{"steps": []}']}
    spec = PlanSpec(mode="refine", iterations=0, primary_model_id="beta", output_schema=SCHEMA)
    result = await rig.orchestrator.run(spec, task(), policy())
    assert result.response["output"] == {"steps": []}
    assert result.response["repaired"] is True and result.response["plan"] == '{"steps":[]}'
    assert [s.role for s in result.steps] == ["plan", "repair"]
    repair = rig.script.calls[1][1]
    assert repair.messages[-2].content == "no json here"


async def test_return_plan_only_keeps_just_the_plan(rig: Rig) -> None:
    """return_plan_only reduces the response to the final plan text."""
    rig.script.answers = {"beta": ["v1", "v2"]}
    spec = PlanSpec(mode="refine", primary_model_id="beta", return_plan_only=True)
    result = await rig.orchestrator.run(spec, task(), policy())
    assert result.response == {"plan": "v2"}
