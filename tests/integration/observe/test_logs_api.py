"""Admin observability routes over HTTP: logs, one log with its trace, rewards, stats."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import sqlite_url
from tokenhub.api.admin_observe import ObserveBundle, observe_router
from tokenhub.api.errors import install_error_handlers
from tokenhub.observe.logsink import LogSink
from tokenhub.observe.recorder import Recorder
from tokenhub.observe.stats import StatsService
from tokenhub.store.db import Database
from tokenhub.store.logs import LogRepo
from tokenhub.types import Attempt, Decision, ErrorClass, ModelConfig, Outcome, Usage

NOW = 5_000.0


def make_app(bundle: ObserveBundle) -> FastAPI:
    """The router behind the error handlers app.py installs."""
    api = FastAPI()
    install_error_handlers(api)

    api.include_router(observe_router(lambda: bundle))
    return api


def outcome(i: int, **kw: Any) -> Outcome:
    base: dict[str, Any] = {
        "request_id": f"req-{i}",
        "surface": "openai",
        "started_at": NOW - 100 + i,
        "status": 200,
        "latency_ms": 50.0 + i,
        "model": "m1",
        "provider": "p1",
        "api_key_id": "key-a",
        "usage": Usage(10, 2),
        "cost_usd": 0.001,
        "decision": Decision(attempts=[Attempt("m1", "p1", latency_ms=40.0)]),
    }
    return Outcome(**{**base, **kw})


def failover() -> Decision:
    return Decision(
        model=ModelConfig("m2", "p2"),
        provider_id="p2",
        reason="failover-transient",
        estimated_tokens=300,
        ranked=[("m1", 0.9), ("m2", 0.7)],
        excluded={"m3": "estimated cost $0.100000 over budget $0.050000"},
        attempts=[
            Attempt("m1", "p1", ErrorClass.TRANSIENT, 503, "upstream 503", 20.0, 100.0),
            Attempt("m2", "p2", latency_ms=80.0),
        ],
    )


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the observe router, with six requests recorded through the
    real recorder and log sink."""
    db = Database(sqlite_url(tmp_path / "api.db"))
    await db.start()
    await db.migrate()
    repo = LogRepo(db)
    rec = Recorder([LogSink(repo)])
    await rec.start()
    for i in range(4):
        rec.record(outcome(i))
    rec.record(outcome(4, model="m2", provider="p2", api_key_id="key-b", decision=failover()))
    rec.record(outcome(5, status=502, error_class="transient", error="all providers failed"))
    await rec.stop()
    bundle = ObserveBundle(repo, StatsService(repo, clock=lambda: NOW), rec)
    transport = httpx.ASGITransport(make_app(bundle))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c
    await db.close()


async def test_list_logs_newest_first_with_filters(client: httpx.AsyncClient) -> None:
    """GET /logs pages newest first and filters by model, provider, status and key."""
    r = await client.get("/admin/v1/logs")
    assert r.status_code == 200
    body = r.json()
    assert [x["request_id"] for x in body["logs"]][:2] == ["req-5", "req-4"]
    assert (body["limit"], body["offset"]) == (50, 0)
    first = body["logs"][1]
    assert (first["model"], first["cost_usd"], first["attempts"]) == ("m2", 0.001, 2)
    assert "trace" not in first and "id" not in first

    async def ids(query: str) -> list[str]:
        r = await client.get("/admin/v1/logs?" + query)
        assert r.status_code == 200, r.text
        return [x["request_id"] for x in r.json()["logs"]]

    assert await ids("model=m2") == ["req-4"]
    assert await ids("provider=p2") == ["req-4"]
    assert await ids("key=key-b") == ["req-4"]
    assert await ids("status=502") == ["req-5"]
    assert await ids("status=error") == ["req-5"]
    assert len(await ids("status=ok")) == 5
    assert await ids("limit=2&offset=1") == ["req-4", "req-3"]


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=1001", "offset=-1", "limit=abc", "status=teapot", "status=99", "model="],
)
async def test_bad_log_params_are_422(client: httpx.AsyncClient, query: str) -> None:
    """Out-of-range paging and unknown status filters answer 422 with an error body."""
    r = await client.get("/admin/v1/logs?" + query)
    assert r.status_code == 422
    assert r.json()["error"]["type"] == "invalid_request_error"


async def test_one_log_shows_why_the_request_went_there(client: httpx.AsyncClient) -> None:
    """GET /logs/{id} returns the row, its decision trace and one reward per attempt."""
    r = await client.get("/admin/v1/logs/req-4")
    assert r.status_code == 200
    body = r.json()
    t = body["trace"]
    assert (t["model"], t["provider"], t["reason"]) == ("m2", "p2", "failover-transient")
    assert t["ranked"] == [{"model": "m1", "score": 0.9}, {"model": "m2", "score": 0.7}]
    assert t["excluded"] == [
        {"model": "m3", "reason": "estimated cost $0.100000 over budget $0.050000"}
    ]
    assert [(a["model"], a["error_class"], a["backoff_ms"]) for a in t["attempts"]] == [
        ("m1", "transient", 100.0),
        ("m2", None, 0.0),
    ]
    assert [(w["attempt"], w["success"]) for w in body["rewards"]] == [(0, False), (1, True)]
    assert body["rewards"][0]["reward"] == 0.0 and 0.4 < body["rewards"][1]["reward"] <= 1.0


async def test_unknown_log_is_404(client: httpx.AsyncClient) -> None:
    """An id never logged answers 404 in the admin error shape."""
    r = await client.get("/admin/v1/logs/nope")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "log_not_found"


async def test_rewards_list_and_filters(client: httpx.AsyncClient) -> None:
    """GET /rewards lists attempt rows, filterable by success, model, provider and key."""
    r = await client.get("/admin/v1/rewards?limit=1000")
    assert r.status_code == 200
    assert len(r.json()["rewards"]) == 7  # six requests, one with two attempts
    r = await client.get("/admin/v1/rewards?status=failure")
    failed = {(w["request_id"], w["model"]) for w in r.json()["rewards"]}
    assert failed == {("req-4", "m1"), ("req-5", "m1")}
    r = await client.get("/admin/v1/rewards?key=key-b&provider=p2")
    assert [(w["model"], w["token_bucket"]) for w in r.json()["rewards"]] == [("m2", "small")]
    assert (await client.get("/admin/v1/rewards?status=ok")).status_code == 422


async def test_stats_route(client: httpx.AsyncClient) -> None:
    """GET /stats aggregates the window and shows the recorder's queue, drops and losses."""
    r = await client.get("/admin/v1/stats?window=1h")
    assert r.status_code == 200
    body = r.json()
    assert body["window"] == "1h" and body["window_s"] == 3600
    g = body["global"]
    assert (g["requests"], g["errors"], g["tokens_in"]) == (6, 1, 60)
    assert g["cost_usd"] == pytest.approx(0.006)
    assert [m["model"] for m in body["by_model"]] == ["m1", "m2"]
    assert body["recorder"] == {"queue_depth": 0, "dropped": 0, "lost": {"logs": 0}}
    assert (await client.get("/admin/v1/stats?window=10s")).json()["global"]["requests"] == 0


@pytest.mark.parametrize("window", ["abc", "0", "500d"])
async def test_bad_window_is_422(client: httpx.AsyncClient, window: str) -> None:
    """A window that is not a positive duration up to a year answers 422."""
    r = await client.get(f"/admin/v1/stats?window={window}")
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "bad_window"


async def test_sink_failure_log_carries_no_row_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing store is logged by sink name only: no key id, request id or row data."""
    db = Database(sqlite_url(tmp_path / "s.db"))
    await db.start()
    await db.migrate()
    repo = LogRepo(db)
    rec = Recorder([LogSink(repo)], retries=0)
    rec.record(outcome(1, api_key_id="key-id-1"))
    await db.close()  # the sink now fails: its error must not leak row contents
    with caplog.at_level(logging.DEBUG):
        await rec.stop()
    assert rec.sink_failures == {"logs": 1}
    assert "key-id-1" not in caplog.text and "req-1" not in caplog.text
