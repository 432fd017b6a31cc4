"""Request logs, decision traces, rewards, stats and the TSDB over HTTP after traffic."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.upstreams import FakeOpenAI, Reply
from tests.integration.harness import Gateway, gateway_settings, run_gateway
from tests.integration.observe_e2e.helpers import chat_body, eventually

PRICES = {"input_per_1k": 0.01, "output_per_1k": 0.02}
EACH_USD = 10 / 1000 * 0.01 + 5 / 1000 * 0.02  # the fake answers 10 in, 5 out
ANTHROPIC_BODY = {"model": "m-a", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}


@dataclass
class Traffic:
    """A gateway after a known scenario, with the ids of its requests."""

    g: Gateway
    key_id: str
    sent: dict[str, int]  # request id -> HTTP status the client got


@pytest.fixture
async def second_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


async def _send(g: Gateway, t: Traffic, rid: str, path: str, body: Any) -> None:
    headers = {"X-Request-ID": rid}
    if isinstance(body, bytes):
        r = await g.client.post(path, content=body, headers=headers)
    else:
        r = await g.client.post(path, json=body, headers=headers)
    assert r.headers["x-request-id"] == rid
    t.sent[rid] = r.status_code


@pytest.fixture
async def traffic(
    tmp_path: Path, fake_openai: FakeOpenAI, second_openai: FakeOpenAI
) -> AsyncIterator[Traffic]:
    """Providers a (hinted, misbehaving) and b; five routed requests and one bad body:

    failover  a answers 503 three times (two backoffs), b serves it
    plain     a serves it
    limited   a answers 429 Retry-After 30, b serves it
    cooled    a is cooling down (excluded), b serves it
    stream    b serves a stream
    messages  the Anthropic surface, b serves it
    bad       malformed JSON, 400
    """
    fake_openai.script(
        Reply(status=503), Reply(status=503), Reply(status=503), Reply(text="a ok"),
        Reply(status=429, headers={"Retry-After": "30"}),
    )  # fmt: skip
    async with run_gateway(gateway_settings(tmp_path, demo="false")) as g:
        await g.add_provider("a", "openai", fake_openai.base_url, api_key="k")
        await g.add_provider("b", "openai", second_openai.base_url, api_key="k")
        await g.add_model("m-a", "a", weight=9, **PRICES)
        await g.add_model("m-b", "b", weight=3, **PRICES)
        keys = (await g.admin.get("/admin/v1/apikeys")).json()["apikeys"]
        t = Traffic(g, next(k["id"] for k in keys if k["name"] == "harness"), {})
        for rid in ("lg-failover", "lg-plain", "lg-limited", "lg-cooled"):
            await _send(g, t, rid, "/v1/chat/completions", chat_body("m-a"))
        await _send(g, t, "lg-stream", "/v1/chat/completions", chat_body("m-b", stream=True))
        await _send(g, t, "lg-messages", "/v1/messages", ANTHROPIC_BODY)
        await _send(g, t, "lg-bad", "/v1/chat/completions", b"{nope")
        assert len(fake_openai.requests) == 5  # nothing reached a while it cooled down

        async def logged() -> list[dict[str, Any]] | None:
            rows = (await g.admin.get("/admin/v1/logs")).json()["logs"]
            return rows if len(rows) == len(t.sent) else None

        await eventually(logged)
        yield t


async def test_logs_list_every_request_with_its_facts(traffic: Traffic) -> None:
    """GET /admin/v1/logs lists each request with key, surface, model, provider,
    tokens, cost, status, reason and attempts."""
    rows = (await traffic.g.admin.get("/admin/v1/logs")).json()["logs"]
    by_id = {r["request_id"]: r for r in rows}
    assert {rid: by_id[rid]["status"] for rid in traffic.sent} == traffic.sent
    assert all(r["api_key_id"] == traffic.key_id for r in rows)
    expect = {
        "lg-failover": ("openai", "m-b", "b", "failover-transient", 4),
        "lg-plain": ("openai", "m-a", "a", by_id["lg-plain"]["reason"], 1),
        "lg-limited": ("openai", "m-b", "b", "failover-rate-limited", 2),
        "lg-cooled": ("openai", "m-b", "b", by_id["lg-cooled"]["reason"], 1),
        "lg-stream": ("openai", "m-b", "b", by_id["lg-stream"]["reason"], 1),
        "lg-messages": ("anthropic", "m-b", "b", by_id["lg-messages"]["reason"], 1),
    }
    for rid, (surface, model, provider, reason, attempts) in expect.items():
        r = by_id[rid]
        got = (r["surface"], r["model"], r["provider"], r["reason"], r["attempts"])
        assert got == (surface, model, provider, reason, attempts), r
        assert (r["tokens_in"], r["tokens_out"]) == (10, 5), r
        assert r["cost_usd"] == pytest.approx(EACH_USD), r
        assert r["reason"], r
    assert by_id["lg-stream"]["stream"] and by_id["lg-stream"]["ttft_ms"] is not None
    bad = by_id["lg-bad"]
    assert (bad["status"], bad["model"], bad["error_class"], bad["cost_usd"]) == (
        400,
        None,
        "client",
        0,
    )
    only_b = (await traffic.g.admin.get("/admin/v1/logs", params={"provider": "b"})).json()
    assert {r["request_id"] for r in only_b["logs"]} == {
        "lg-failover", "lg-limited", "lg-cooled", "lg-stream", "lg-messages",
    }  # fmt: skip
    errors = (await traffic.g.admin.get("/admin/v1/logs", params={"status": "error"})).json()
    assert [r["request_id"] for r in errors["logs"]] == ["lg-bad"]


async def test_log_detail_shows_the_decision_trace(traffic: Traffic) -> None:
    """GET /admin/v1/logs/{id} shows ranking with scores, attempts with error classes
    and backoff for a failover, and exclusions with cooldowns for a cooled provider."""
    d = (await traffic.g.admin.get("/admin/v1/logs/lg-failover")).json()
    trace = d["trace"]
    assert trace["ranked"][0]["model"] == "m-a"
    assert {r["model"] for r in trace["ranked"]} == {"m-a", "m-b"}
    assert all(isinstance(r["score"], float) for r in trace["ranked"])
    attempts = [
        (a["model"], a["error_class"], a["status"], a["backoff_ms"]) for a in trace["attempts"]
    ]
    assert attempts == [
        ("m-a", "transient", 503, 100.0),
        ("m-a", "transient", 503, 200.0),
        ("m-a", "transient", 503, 0.0),  # no retry left: moved on without waiting
        ("m-b", None, None, 0.0),
    ]
    assert [r["success"] for r in d["rewards"]] == [False, False, False, True]
    assert d["rewards"][-1]["reward"] > 0 and d["rewards"][0]["reward"] == 0

    cooled = (await traffic.g.admin.get("/admin/v1/logs/lg-cooled")).json()["trace"]
    excluded = {e["model"]: e["reason"] for e in cooled["excluded"]}
    assert "unavailable" in excluded["m-a"] and "rate limited" in excluded["m-a"]
    assert [c["provider"] for c in cooled["cooldowns"]] == ["a"]
    assert 0 < cooled["cooldowns"][0]["remaining_s"] <= 30
    assert [a["model"] for a in cooled["attempts"]] == ["m-b"]
    missing = await traffic.g.admin.get("/admin/v1/logs/no-such-request")
    assert missing.status_code == 404


async def test_rewards_filter_by_model_provider_status_and_key(traffic: Traffic) -> None:
    """GET /admin/v1/rewards filters by model, provider, outcome and key."""
    admin = traffic.g.admin

    async def rewards(**params: str) -> list[dict[str, Any]]:
        r = await admin.get("/admin/v1/rewards", params=params)
        assert r.status_code == 200, r.text
        return list(r.json()["rewards"])

    failures = await rewards(provider="a", status="failure")
    assert sorted(r["error_class"] for r in failures) == ["rate_limited"] + ["transient"] * 3
    assert all(r["reward"] == 0 and r["cost_usd"] == 0 for r in failures)
    wins_b = await rewards(model="m-b", status="success")
    assert len(wins_b) == 5 and all(0 < r["reward"] <= 1 for r in wins_b)
    assert len(await rewards(key=traffic.key_id)) == 10
    assert await rewards(key="no-such-key") == []
    assert (await admin.get("/admin/v1/rewards", params={"status": "maybe"})).status_code == 422


async def test_stats_agree_with_the_traffic(traffic: Traffic) -> None:
    """GET /admin/v1/stats totals, per model and per provider match what was sent."""
    body = (await traffic.g.admin.get("/admin/v1/stats", params={"window": "1h"})).json()
    total = body["global"]
    assert (total["requests"], total["errors"]) == (7, 1)
    assert (total["tokens_in"], total["tokens_out"]) == (60, 30)
    assert total["cost_usd"] == pytest.approx(6 * EACH_USD)
    by_model = {m["model"]: m["requests"] for m in body["by_model"]}
    assert by_model == {"m-b": 5, "m-a": 1}  # the unrouted 400 has no model to rank
    by_provider = {p["provider"]: p for p in body["by_provider"]}
    assert by_provider["b"]["requests"] == 5 and by_provider["b"]["avg_ttft_ms"] is not None
    assert body["recorder"]["dropped"] == 0


async def test_tsdb_over_http_counts_the_traffic(traffic: Traffic) -> None:
    """/admin/v1/tsdb/metrics lists the outcome metrics and a query's bucket counts add
    up to the routed requests per model."""
    admin = traffic.g.admin
    listed = (await admin.get("/admin/v1/tsdb/metrics")).json()
    names = {m["name"]: m["points"] for m in listed["metrics"]}
    assert {"latency_ms", "cost_usd", "tokens_in", "tokens_out", "ttft_ms"} <= set(names)
    assert names["latency_ms"] == 6 and names["ttft_ms"] == 1
    q = await admin.get(
        "/admin/v1/tsdb/query", params={"metric": "latency_ms", "step": "1h", "group_by": "model"}
    )
    assert q.status_code == 200, q.text
    counts = {s["model"]: sum(p["count"] for p in s["points"]) for s in q.json()["series"]}
    assert counts == {"m-a": 1, "m-b": 5}
    tokens = await admin.get(
        "/admin/v1/tsdb/query", params={"metric": "tokens_out", "step": "1h", "provider": "b"}
    )
    points = [p for s in tokens.json()["series"] for p in s["points"]]
    assert sum(p["sum"] for p in points) == 25 and sum(p["count"] for p in points) == 5
