"""Thompson sampling and client feedback end to end: arms fill from traffic, thumbs
down lowers the serving model's arm, feedback is per key, and arms survive a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.upstreams import FakeOpenAI
from tests.integration.adaptive_e2e.support import (
    client_for,
    eventually,
    log_row,
    new_key,
    settings,
    user,
)
from tests.integration.harness import Gateway, run_gateway

MODELS = {"m-one": {"weight": 7}, "m-two": {"weight": 7}}


@pytest.fixture
async def second_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


async def summary(g: Gateway) -> list[dict[str, Any]]:
    r = await g.admin.get("/admin/v1/rewards/summary")
    assert r.status_code == 200, r.text
    arms: list[dict[str, Any]] = r.json()["arms"]
    return arms


def arm(arms: list[dict[str, Any]], model: str, bucket: str) -> dict[str, Any]:
    return next(a for a in arms if a["model"] == model and a["bucket"] == bucket)


async def send_traffic(g: Gateway, n: int) -> list[tuple[str, str]]:
    """``n`` chat requests with no model hint: (request id, serving model)."""
    out = []
    for i in range(n):
        rid = f"ts-{i}"
        r = await g.client.post(
            "/v1/chat/completions",
            json={"messages": user("tell me a fact")},
            headers={"X-Request-ID": rid},
        )
        assert r.status_code == 200, r.text
        assert r.headers["x-tokenhub-model"] in MODELS
        out.append((rid, r.headers["x-tokenhub-model"]))
    return out


async def setup(g: Gateway, one: FakeOpenAI, two: FakeOpenAI) -> None:
    await g.add_provider("p1", "openai", one.base_url, api_key="k1")
    await g.add_provider("p2", "openai", two.base_url, api_key="k2")
    for (mid, cfg), pid in zip(MODELS.items(), ("p1", "p2"), strict=True):
        await g.add_model(mid, pid, max_context_tokens=32000, **cfg)
    r = await g.admin.put("/admin/v1/routing-config", json={"default_mode": "thompson"})
    assert r.status_code == 200 and r.json()["default_mode"] == "thompson", r.text


async def test_thompson_feedback_and_restart(
    tmp_path: Path, fake_openai: FakeOpenAI, second_openai: FakeOpenAI
) -> None:
    """Traffic pulls arms; thumbs down lowers the serving arm's mean; another key's
    feedback is 404; a restart restores the same arms."""
    cfg = settings(tmp_path)
    async with run_gateway(cfg) as g:
        await setup(g, fake_openai, second_openai)
        sent = await send_traffic(g, 12)
        served = {m for _, m in sent}
        assert len(fake_openai.requests) + len(second_openai.requests) == 12

        async def pulled() -> list[dict[str, Any]] | None:
            arms = await summary(g)
            total = sum(a["pulls"] for a in arms if a["model"] in MODELS)
            return arms if total >= 12 else None

        arms = await eventually(pulled)
        assert {a["model"] for a in arms if a["pulls"] > 0} == served

        rid, model = sent[-1]
        await log_row(g, rid)
        other, _ = await new_key(g, "feedback")
        async with client_for(g, other) as stranger:
            r = await stranger.post("/v1/feedback", json={"request_id": rid, "thumbs": "down"})
            assert r.status_code == 404, r.text
        bucket_arms = await summary(g)
        r = await g.client.post("/v1/feedback", json={"request_id": rid, "thumbs": "down"})
        assert r.status_code == 200, r.text
        fb = r.json()
        assert fb["model"] == model
        before = arm(bucket_arms, model, fb["bucket"])
        after = arm(await summary(g), model, fb["bucket"])
        assert after["mean"] < before["mean"]
        assert after["beta"] > before["beta"]
        assert fb["arm_mean"] == pytest.approx(after["mean"], abs=1e-4)
        r = await g.client.post("/v1/feedback", json={"request_id": rid, "thumbs": "up"})
        assert r.status_code == 409, r.text  # once per request
        kept = await summary(g)
        assert sum(a["pulls"] for a in kept) >= 12

    async with run_gateway(cfg) as g:
        restored = await summary(g)
        assert [(a["model"], a["bucket"], a["pulls"]) for a in restored] == [
            (a["model"], a["bucket"], a["pulls"]) for a in kept
        ]
        for old, new in zip(kept, restored, strict=True):
            assert new["alpha"] == pytest.approx(old["alpha"], rel=1e-3)
            assert new["beta"] == pytest.approx(old["beta"], rel=1e-3)
        again = await send_traffic(g, 1)
        assert again[0][1] in MODELS  # routing still works in thompson after restart


async def test_feedback_needs_the_feedback_scope(
    tmp_path: Path, fake_openai: FakeOpenAI, second_openai: FakeOpenAI
) -> None:
    """A chat-only key cannot send feedback (403), even on its own request."""
    async with run_gateway(settings(tmp_path)) as g:
        await setup(g, fake_openai, second_openai)
        key, _ = await new_key(g, "chat")
        async with client_for(g, key) as chat_only:
            r = await chat_only.post(
                "/v1/chat/completions",
                json={"messages": user("hi")},
                headers={"X-Request-ID": "fb-scope-1"},
            )
            assert r.status_code == 200, r.text
            await log_row(g, "fb-scope-1")
            r = await chat_only.post(
                "/v1/feedback", json={"request_id": "fb-scope-1", "score": 0.2}
            )
        assert r.status_code == 403, r.text
        r = await g.client.post("/v1/feedback", json={"request_id": "fb-scope-1", "score": 0.2})
        assert r.status_code == 404, r.text  # the harness key did not make that request
