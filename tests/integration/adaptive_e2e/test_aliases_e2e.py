"""Model aliases and the "*" diversity pool through the real gateway."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from tests.fakes.upstreams import FakeAnthropic, FakeOpenAI
from tests.integration.adaptive_e2e.support import ant_sdk, gateway, upstream_models, user
from tests.integration.harness import Gateway

CANARY = {"targets": [{"model": "big", "weight": 90}, {"model": "small", "weight": 10}]}


async def chat_as(g: Gateway, model: str) -> tuple[str, str]:
    """One chat request naming ``model``: (served model header, reason header)."""
    r = await g.client.post("/v1/chat/completions", json={"model": model, "messages": user("hi")})
    assert r.status_code == 200, r.text
    return r.headers["x-tokenhub-model"], r.headers["x-tokenhub-reason"]


async def test_canary_alias_splits_90_10(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """200 requests to a 90/10 alias split 180/20 (smooth WRR is exact per 100; we
    allow +-2 in case a request were ever reordered) with reason alias:canary."""
    async with gateway(tmp_path, fake_openai) as g:
        r = await g.admin.put("/admin/v1/aliases/canary", json=CANARY)
        assert r.status_code == 200, r.text
        assert r.json() == {"name": "canary", **CANARY}
        served: list[tuple[str, str]] = []
        for _ in range(10):  # batches of 20 concurrent requests
            served += await asyncio.gather(*(chat_as(g, "canary") for _ in range(20)))
        counts = Counter(model for model, _ in served)
        assert abs(counts["big"] - 180) <= 2 and counts["big"] + counts["small"] == 200
        assert {reason for _, reason in served} == {"alias:canary"}
        assert Counter(upstream_models(fake_openai)) == counts


async def test_alias_on_the_anthropic_surface(
    tmp_path: Path, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    """An alias named through the Anthropic SDK resolves to its (Anthropic) target."""
    async with gateway(tmp_path, fake_openai, fake_anthropic) as g, ant_sdk(g) as client:
        r = await g.admin.put("/admin/v1/aliases/team/writer", json={"model": "claude-x"})
        assert r.status_code == 200, r.text
        raw = await client.messages.with_raw_response.create(
            model="team/writer", max_tokens=16, messages=user("hi")
        )
        assert raw.headers["x-tokenhub-model"] == "claude-x"
        assert raw.headers["x-tokenhub-reason"] == "alias:team/writer"
        assert upstream_models(fake_anthropic) == ["claude-x"]


async def test_alias_change_and_delete_take_effect(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """Re-pointing an alias moves traffic at once; after deletion the name is a plain hint."""
    async with gateway(tmp_path, fake_openai) as g:
        await g.admin.put("/admin/v1/aliases/fast", json={"model": "small"})
        assert await chat_as(g, "fast") == ("small", "alias:fast")
        await g.admin.put("/admin/v1/aliases/fast", json={"model": "big"})
        assert await chat_as(g, "fast") == ("big", "alias:fast")
        r = await g.admin.delete("/admin/v1/aliases/fast")
        assert r.status_code == 200, r.text
        _, reason = await chat_as(g, "fast")
        assert reason != "alias:fast"


async def test_star_round_robins_over_the_pool(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """model "*" cycles through the pool set with PUT /admin/v1/aliases-pool."""
    async with gateway(tmp_path, fake_openai) as g:
        await g.add_model("mid", "oa", weight=6, max_context_tokens=32000)
        r = await g.admin.put("/admin/v1/aliases-pool", json={"models": ["small", "mid"]})
        assert r.status_code == 200, r.text
        assert (await g.admin.get("/admin/v1/aliases-pool")).json() == {"models": ["small", "mid"]}
        served = [(await chat_as(g, "*"))[0] for _ in range(6)]
        assert served in (["small", "mid"] * 3, ["mid", "small"] * 3)
        assert "big" not in upstream_models(fake_openai)


async def test_star_without_pool_uses_every_model(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """With an empty pool "*" rotates over every routable chat model."""
    async with gateway(tmp_path, fake_openai) as g:
        served = [(await chat_as(g, "*"))[0] for _ in range(4)]
        assert sorted(served) == ["big", "big", "small", "small"]


async def test_malformed_alias_is_rejected(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """An alias body that is malformed is a 422 and leaves no alias behind."""
    async with gateway(tmp_path, fake_openai) as g:
        r = await g.admin.put("/admin/v1/aliases/bad", json={"targets": []})
        assert r.status_code == 422, r.text
        assert (await g.admin.get("/admin/v1/aliases/bad")).status_code == 404
