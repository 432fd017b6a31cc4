"""POST /v1/plan end to end: a FastAPI app with plan_router on loopback, real OpenAI
adapters talking to a fake OpenAI upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request

from tests.conftest import free_port
from tests.fakes.upstreams import FakeOpenAI, Reply
from tokenhub.api.errors import install_error_handlers
from tokenhub.api.plan import PlanBundle, plan_router
from tokenhub.errors import Forbidden, Unauthorized
from tokenhub.observe.health import HealthTracker
from tokenhub.providers.registry import create_adapter
from tokenhub.routing.catalog import Catalog
from tokenhub.routing.config import RoutingConfig
from tokenhub.routing.engine import RoutingEngine
from tokenhub.routing.orchestration import Orchestrator
from tokenhub.types import ModelConfig, Outcome, ProviderConfig, Usage

KEY_HEADER = "x-test-key"
BIG = ModelConfig("big", "up", weight=9, input_per_1k=0.002, output_per_1k=0.004)
MID = ModelConfig("mid", "up", weight=7, input_per_1k=0.001, output_per_1k=0.002)
SMALL = ModelConfig("small", "up", weight=5, input_per_1k=0.0005, output_per_1k=0.001)


@dataclass
class Principal:
    id: str


@dataclass
class FakeBudget:
    """A key budget with a fixed remainder that records holds and charges."""

    remaining: float | None = None
    reserved: list[float] = field(default_factory=list)
    settled: list[float] = field(default_factory=list)
    released: int = 0

    async def remaining_budget_usd(self, principal: Any) -> float | None:
        return self.remaining

    async def reserve(self, principal: Any, max_cost_usd: float) -> float:
        self.reserved.append(max_cost_usd)
        return max_cost_usd

    async def settle(self, res: Any, cost_usd: float) -> None:
        self.settled.append(cost_usd)

    async def release(self, res: Any) -> None:
        self.released += 1


async def admit(request: Request, scope: str) -> Principal:
    """Accepts key 'good' for every scope, 'chat-only' for chat only."""
    key = request.headers.get(KEY_HEADER)
    if key not in ("good", "chat-only"):
        raise Unauthorized("missing or invalid api key")
    if key == "chat-only" and scope != "chat":
        raise Forbidden("scope not allowed", code="scope_not_allowed")
    return Principal(id=f"key-{key}")


@dataclass
class PlanServer:
    client: httpx.AsyncClient
    records: list[Outcome]
    budget: FakeBudget

    async def plan(self, body: dict[str, Any], key: str = "good") -> httpx.Response:
        return await self.client.post("/v1/plan", json=body, headers={KEY_HEADER: key})


def build_app(bundle: PlanBundle) -> FastAPI:
    api = FastAPI()
    install_error_handlers(api)

    api.include_router(plan_router(lambda: bundle))
    return api


@asynccontextmanager
async def serve(upstream: FakeOpenAI, budget: FakeBudget) -> AsyncIterator[PlanServer]:
    catalog = Catalog(lambda cfg: create_adapter(cfg, lambda _: "sk-test"))
    await catalog.set_provider(
        ProviderConfig(id="up", type="openai", base_urls=[upstream.base_url])
    )
    for model in (BIG, MID, SMALL):
        catalog.set_model(model)
    engine = RoutingEngine(
        catalog, HealthTracker(), RoutingConfig(transient_backoff_ms=()), timeout_s=5.0
    )
    records: list[Outcome] = []
    bundle = PlanBundle(Orchestrator(engine), engine, admit, records.append, budget)
    port = free_port()
    config = uvicorn.Config(
        build_app(bundle), host="127.0.0.1", port=port, lifespan="off", log_config=None, loop="none"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield PlanServer(client, records, budget)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        await catalog.close()


@pytest.fixture
async def gw(fake_openai: FakeOpenAI) -> AsyncIterator[PlanServer]:
    async with serve(fake_openai, FakeBudget()) as server:
        yield server


def body(**fields: Any) -> dict[str, Any]:
    return {"request": {"messages": [{"role": "user", "content": "Plan a launch"}]}, **fields}


def upstream_models(up: FakeOpenAI) -> list[str]:
    return [r.json["model"] for r in up.requests]


async def test_planning_end_to_end(gw: PlanServer, fake_openai: FakeOpenAI) -> None:
    """Planning answers with one upstream call, its plan, cost and steps."""
    fake_openai.script(Reply(text="1. build 2. ship"))
    r = await gw.plan(body(primary_model_id="mid"))
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["response"] == {"plan": "1. build 2. ship"}
    assert data["negotiated_model"] == "mid"
    assert data["routing_reason"] == "planning-orchestration"
    assert data["steps"][0]["model"] == "mid"
    assert data["steps"][0]["cost_usd"] == pytest.approx(MID.cost(Usage(10, 5)))
    assert data["estimated_cost_usd"] > 0
    assert upstream_models(fake_openai) == ["mid"]


async def test_adversarial_end_to_end(gw: PlanServer, fake_openai: FakeOpenAI) -> None:
    """Adversarial plans on the primary, critiques on the review model, then refines."""
    fake_openai.script(Reply(text="plan v1"), Reply(text="too vague"), Reply(text="plan v2"))
    r = await gw.plan(
        body(mode="adversarial", iterations=1, primary_model_id="small", review_model_id="big")
    )
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["response"] == {"plan": "plan v2", "critiques": ["too vague"], "iterations": 1}
    assert data["routing_reason"] == "adversarial-orchestration"
    assert upstream_models(fake_openai) == ["small", "big", "small"]
    assert "plan v1" in fake_openai.requests[1].json["messages"][1]["content"]
    assert [s["role"] for s in data["steps"]] == ["plan", "critique", "refine"]


async def test_refine_end_to_end(gw: PlanServer, fake_openai: FakeOpenAI) -> None:
    """Refine returns the last revision and every revision on the same model."""
    fake_openai.script(Reply(text="draft"), Reply(text="better"), Reply(text="best"))
    r = await gw.plan(body(mode="refine", iterations=2, primary_model_id="big"))
    assert r.status_code == 200, r.text
    assert r.json()["response"] == {"plan": "best", "revisions": ["better", "best"]}
    assert upstream_models(fake_openai) == ["big", "big", "big"]


async def test_vote_end_to_end(gw: PlanServer, fake_openai: FakeOpenAI) -> None:
    """Vote asks three distinct models, and the judge's '#2' picks the second candidate."""
    fake_openai.script(Reply(text="A"), Reply(text="B"), Reply(text="C"), Reply(text="#2"))
    r = await gw.plan(body(mode="vote", voters=3, review_model_id="big"))
    assert r.status_code == 200, r.text
    resp = r.json()["response"]
    assert sorted(c["text"] for c in resp["candidates"]) == ["A", "B", "C"]
    assert len({c["model"] for c in resp["candidates"]}) == 3
    assert resp["answer"] == resp["candidates"][1]["text"]
    assert resp["judge"]["choice"] == 2 and resp["judge"]["fallback"] is False
    assert sorted(upstream_models(fake_openai)[:3]) == ["big", "mid", "small"]


async def test_vote_unparsable_judge_falls_back(gw: PlanServer, fake_openai: FakeOpenAI) -> None:
    """An unparsable verdict picks the highest-weight model's candidate."""
    fake_openai.script(Reply(text="x"), Reply(text="y"), Reply(text="z"), Reply(text="hmm"))
    r = await gw.plan(body(mode="vote", voters=3, review_model_id="mid"))
    resp = r.json()["response"]
    assert resp["judge"]["fallback"] is True
    big = next(c for c in resp["candidates"] if c["model"] == "big")
    assert resp["answer"] == big["text"]
    assert r.json()["negotiated_model"] == "big"


async def test_return_plan_only_and_output_schema(gw: PlanServer, fake_openai: FakeOpenAI) -> None:
    """output_schema validates the final answer; return_plan_only trims the response."""
    fake_openai.script(Reply(text='{"steps": ["a"]}'), Reply(text='{"steps": ["a"]}'))
    schema = {"type": "object", "required": ["steps"]}
    r = await gw.plan(body(output_schema=schema))
    assert r.status_code == 200, r.text
    assert r.json()["response"]["output"] == {"steps": ["a"]}
    r = await gw.plan(body(output_schema=schema, return_plan_only=True))
    assert r.json()["response"] == {"plan": '{"steps":["a"]}'}  # shaped: compact JSON


async def test_output_schema_mismatch_is_502(gw: PlanServer, fake_openai: FakeOpenAI) -> None:
    """A final answer missing output_schema is a 502 with the validation errors."""
    fake_openai.script(Reply(text='{"stages": []}'))
    r = await gw.plan(body(output_schema={"type": "object", "required": ["steps"]}))
    assert r.status_code == 502
    err = r.json()["error"]
    assert err["code"] == "output_schema_mismatch" and err["details"]["errors"]


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"iterations": 11}, "iterations"),
        ({"iterations": -1}, "iterations"),
        ({"iterations": "3"}, "iterations"),
        ({"mode": "debate"}, "mode"),
        ({"voters": 9}, "voters"),
        ({"policy": {"mode": "turbo"}}, "policy.mode"),
        ({"output_schema": {"type": 5}}, "output_schema"),
        ({"review_model_id": "nope"}, "review_model_id"),
        ({"request": {"messages": []}}, "request.messages"),
    ],
)
async def test_bad_fields_are_400(gw: PlanServer, fields: dict[str, Any], where: str) -> None:
    """Bad iterations, modes, voters, policy or schema answer 400 naming the field."""
    r = await gw.plan(body(**fields))
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and where in err["message"]


async def test_malformed_json_is_400(gw: PlanServer) -> None:
    """A body that is not JSON answers 400."""
    r = await gw.client.post("/v1/plan", content=b"{nope", headers={KEY_HEADER: "good"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]["message"]


async def test_auth_and_scope(gw: PlanServer, fake_openai: FakeOpenAI) -> None:
    """No key is 401, a key without the plan scope is 403; nothing reaches upstream."""
    assert (await gw.plan(body(), key="nope")).status_code == 401
    r = await gw.plan(body(), key="chat-only")
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    assert fake_openai.requests == []


async def test_every_model_failing_is_502(gw: PlanServer, fake_openai: FakeOpenAI) -> None:
    """When every model fails the plan answers 502 upstream_failed."""
    fake_openai.script(*[Reply(status=500)] * 3)
    r = await gw.plan(body())
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "upstream_failed"
    assert gw.records[-1].status == 502 and gw.records[-1].surface == "plan"


async def test_projected_cost_over_budget_is_400(gw: PlanServer, fake_openai: FakeOpenAI) -> None:
    """A plan projected over policy.max_budget_usd is refused before any upstream call."""
    r = await gw.plan(body(mode="adversarial", iterations=10, policy={"max_budget_usd": 0.003}))
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "plan_over_budget" and "projected cost" in err["message"]
    assert fake_openai.requests == []


async def test_key_budget_caps_reserves_and_settles(fake_openai: FakeOpenAI) -> None:
    """The key's remaining budget caps the plan; the projection is held and the cost settled."""
    async with serve(fake_openai, FakeBudget(remaining=0.003)) as gw:
        r = await gw.plan(body(mode="refine", iterations=5))
        assert r.status_code == 400 and gw.budget.reserved == []
        gw.budget.remaining = 10.0
        fake_openai.script(Reply(text="v1"))
        r = await gw.plan(body(primary_model_id="small"))
        assert r.status_code == 200, r.text
        data = r.json()
        assert gw.budget.reserved == [pytest.approx(data["estimated_cost_usd"])]
        assert gw.budget.settled == [pytest.approx(data["cost_usd"])]


async def test_outcome_is_recorded(gw: PlanServer, fake_openai: FakeOpenAI) -> None:
    """Each plan request yields one Outcome with model, key, cost and reason."""
    fake_openai.script(Reply(text="p"))
    r = await gw.plan(body(primary_model_id="mid"))
    assert r.status_code == 200
    (outcome,) = gw.records
    assert (outcome.surface, outcome.status, outcome.model) == ("plan", 200, "mid")
    assert outcome.api_key_id == "key-good"
    assert outcome.reason == "planning-orchestration"
    assert outcome.cost_usd == pytest.approx(r.json()["cost_usd"])
    assert outcome.usage.total_tokens == 15
