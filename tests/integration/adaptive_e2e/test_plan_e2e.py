"""POST /v1/plan through the real gateway: each orchestration mode against scripted
fake replies, scope, budget projection and total failure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.upstreams import FakeOpenAI, Reply
from tests.integration.adaptive_e2e.support import (
    client_for,
    gateway,
    log_row,
    new_key,
    upstream_models,
    user,
)
from tests.integration.harness import Gateway


@pytest.fixture
async def g(tmp_path: Path, fake_openai: FakeOpenAI) -> AsyncIterator[Gateway]:
    """big (9), mid (6) and small (3) on one fake OpenAI upstream."""
    async with gateway(tmp_path, fake_openai) as gw:
        await gw.add_model(
            "mid", "oa", weight=6, input_per_1k=0.001, output_per_1k=0.002, max_context_tokens=32000
        )
        yield gw


def body(**fields: Any) -> dict[str, Any]:
    return {"request": {"messages": user("Plan a product launch")}, **fields}


async def plan(g: Gateway, rid: str | None = None, **fields: Any) -> Any:
    headers = {"X-Request-ID": rid} if rid else {}
    return await g.client.post("/v1/plan", json=body(**fields), headers=headers)


async def test_planning(g: Gateway, fake_openai: FakeOpenAI) -> None:
    """Planning makes one call on the primary model and is logged with surface plan."""
    fake_openai.script(Reply(text="1. build 2. ship"))
    r = await plan(g, "plan-1", primary_model_id="mid")
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["response"] == {"plan": "1. build 2. ship"}
    assert (data["negotiated_model"], data["routing_reason"]) == ("mid", "planning-orchestration")
    assert data["cost_usd"] > 0 and data["estimated_cost_usd"] > 0
    assert upstream_models(fake_openai) == ["mid"]
    row = await log_row(g, "plan-1")
    assert (row["surface"], row["model"], row["status"]) == ("plan", "mid", 200)


async def test_adversarial(g: Gateway, fake_openai: FakeOpenAI) -> None:
    """Adversarial: plan on the primary, critique on the reviewer, refine on the primary."""
    fake_openai.script(Reply(text="plan v1"), Reply(text="too vague"), Reply(text="plan v2"))
    r = await plan(
        g, mode="adversarial", iterations=1, primary_model_id="small", review_model_id="big"
    )
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["response"] == {"plan": "plan v2", "critiques": ["too vague"], "iterations": 1}
    assert [s["role"] for s in data["steps"]] == ["plan", "critique", "refine"]
    assert upstream_models(fake_openai) == ["small", "big", "small"]
    critique_prompt = str(fake_openai.requests[1].json["messages"])
    assert "plan v1" in critique_prompt


async def test_refine(g: Gateway, fake_openai: FakeOpenAI) -> None:
    """Refine keeps every revision and answers with the last, all on the primary."""
    fake_openai.script(Reply(text="draft"), Reply(text="better"), Reply(text="best"))
    r = await plan(
        g, mode="refine", iterations=2, primary_model_id="big", policy={"max_budget_usd": 1.0}
    )
    assert r.status_code == 200, r.text
    assert r.json()["response"] == {"plan": "best", "revisions": ["better", "best"]}
    assert upstream_models(fake_openai) == ["big", "big", "big"]


async def test_vote_with_a_clear_judge(g: Gateway, fake_openai: FakeOpenAI) -> None:
    """Three voters on three distinct models; the judge's "#3" picks the third candidate."""
    fake_openai.script(Reply(text="A"), Reply(text="B"), Reply(text="C"), Reply(text="#3"))
    r = await plan(g, mode="vote", voters=3, review_model_id="mid")
    assert r.status_code == 200, r.text
    resp = r.json()["response"]
    assert resp["judge"] == {**resp["judge"], "choice": 3, "fallback": False}
    assert resp["answer"] == resp["candidates"][2]["text"]
    assert sorted(upstream_models(fake_openai)[:3]) == ["big", "mid", "small"]


async def test_vote_unparsable_judge_falls_back(g: Gateway, fake_openai: FakeOpenAI) -> None:
    """A judge answer with no usable number falls back to the highest-weight model."""
    fake_openai.script(Reply(text="x"), Reply(text="y"), Reply(text="z"), Reply(text="hmm, hard"))
    r = await plan(g, mode="vote", voters=3, review_model_id="mid")
    assert r.status_code == 200, r.text
    data = r.json()
    resp = data["response"]
    assert resp["judge"]["fallback"] is True
    big = next(c for c in resp["candidates"] if c["model"] == "big")
    assert resp["answer"] == big["text"] and data["negotiated_model"] == "big"
    assert len(fake_openai.requests) == 4


async def test_plan_needs_the_plan_scope(g: Gateway, fake_openai: FakeOpenAI) -> None:
    """A chat-only key gets 403 on /v1/plan; nothing reaches the upstream."""
    key, _ = await new_key(g, "chat")
    async with client_for(g, key) as chat_only:
        r = await chat_only.post("/v1/plan", json=body())
    assert r.status_code == 403, r.text
    assert r.json()["error"]["type"] == "permission_error"
    plan_key, _ = await new_key(g, "plan")
    async with client_for(g, plan_key) as planner:
        assert (await planner.post("/v1/plan", json=body())).status_code == 200
    assert len(fake_openai.requests) == 1


async def test_over_budget_projection_is_400(g: Gateway, fake_openai: FakeOpenAI) -> None:
    """A plan projected over policy.max_budget_usd is refused before any call."""
    r = await plan(
        g,
        mode="adversarial",
        iterations=10,
        primary_model_id="big",
        policy={"max_budget_usd": 0.001},
    )
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "plan_over_budget" and "projected cost" in err["message"]
    assert fake_openai.requests == []


async def test_every_model_failing_is_502(g: Gateway, fake_openai: FakeOpenAI) -> None:
    """When every model answers 500 the plan is a 502 upstream_failed, logged as such."""
    fake_openai.script(*[Reply(status=500)] * 30)
    r = await plan(g, "plan-fail-1")
    assert r.status_code == 502, r.text
    assert r.json()["error"]["code"] == "upstream_failed"
    assert len(set(upstream_models(fake_openai))) >= 2  # failed over before giving up
    row = await log_row(g, "plan-fail-1")
    assert (row["surface"], row["status"]) == ("plan", 502)
