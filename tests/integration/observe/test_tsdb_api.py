"""The /admin/v1/tsdb routes over a real loopback socket (uvicorn + httpx)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from tests.conftest import free_port, sqlite_url
from tokenhub.api.admin_tsdb import tsdb_router
from tokenhub.api.errors import install_error_handlers
from tokenhub.observe.tsdb import TSDB
from tokenhub.store.db import Database
from tokenhub.store.settings import SettingsRepo
from tokenhub.store.tsdb import Point, TSDBRepo

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
DAY = 86_400.0


def build_test_app(tsdb: TSDB) -> FastAPI:
    """The router plus the error handlers app.py installs."""
    app = FastAPI()
    install_error_handlers(app)

    app.include_router(tsdb_router(lambda: tsdb))
    return app


@pytest.fixture
async def tsdb(tmp_path: Path) -> AsyncIterator[TSDB]:
    """A started TSDB on SQLite at a fixed wall-clock time, seeded with points."""
    db = Database(sqlite_url(tmp_path / "tsdb.db"))
    await db.start()
    await db.migrate()
    t = TSDB(TSDBRepo(db), SettingsRepo(db), clock=lambda: NOW)
    await t.start()
    await t.write(
        [
            Point(NOW - 50, "latency_ms", "a", "p", 10.0),
            Point(NOW - 40, "latency_ms", "a", "p", 30.0),
            Point(NOW - 5, "latency_ms", "b", "q", 100.0),
            Point(NOW - 5 * DAY, "latency_ms", "a", "p", 1.0),
            Point(NOW - 50, "cost_usd", "a", "p", 0.5),
        ]
    )
    try:
        yield t
    finally:
        await t.stop()
        await db.close()


@pytest.fixture
async def client(tsdb: TSDB) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the test app served by uvicorn on 127.0.0.1."""
    port = free_port()
    config = uvicorn.Config(
        build_test_app(tsdb), host="127.0.0.1", port=port, log_config=None, lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "server failed to start"
        await asyncio.sleep(0.01)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
        yield c
    server.should_exit = True
    await task


async def test_metrics_lists_series_and_retention(client: httpx.AsyncClient) -> None:
    """GET /tsdb/metrics names each metric with counts per series and the retention."""
    r = await client.get("/admin/v1/tsdb/metrics")
    assert r.status_code == 200
    body = r.json()
    assert body["retention_days"] == 7
    lat = next(m for m in body["metrics"] if m["name"] == "latency_ms")
    assert lat["points"] == 4
    assert lat["series"] == [
        {"model": "a", "provider": "p", "points": 3},
        {"model": "b", "provider": "q", "points": 1},
    ]


async def test_query_defaults_to_last_hour_in_minutes(client: httpx.AsyncClient) -> None:
    """Only metric given: the last hour before now in 60 s buckets."""
    r = await client.get("/admin/v1/tsdb/query", params={"metric": "latency_ms"})
    assert r.status_code == 200
    body = r.json()
    assert (body["start"], body["end"], body["step"]) == (NOW - 3600, NOW, 60.0)
    (series,) = body["series"]
    assert series["points"] == [
        {"ts": NOW - 60, "avg": 140 / 3, "max": 100.0, "count": 3, "sum": 140.0}
    ]


async def test_query_accepts_iso_times_step_units_and_group_by(
    client: httpx.AsyncClient,
) -> None:
    """ISO-8601 start/end, a '30s' step and group_by=model give per-model buckets."""
    params = {
        "metric": "latency_ms",
        "start": "2023-11-14T22:12:20Z",  # NOW - 60
        "end": "2023-11-14T22:13:20",  # naive = UTC = NOW
        "step": "30s",
        "group_by": "model",
    }
    body = (await client.get("/admin/v1/tsdb/query", params=params)).json()
    assert body["group_by"] == ["model"]
    a, b = body["series"]
    assert (a["model"], a["provider"]) == ("a", None)
    assert a["points"] == [{"ts": NOW - 60, "avg": 20.0, "max": 30.0, "count": 2, "sum": 40.0}]
    assert b["points"] == [{"ts": NOW - 30, "avg": 100.0, "max": 100.0, "count": 1, "sum": 100.0}]


async def test_query_filters_by_model_and_provider(client: httpx.AsyncClient) -> None:
    """model= and provider= narrow the points and label the series."""
    params = {"metric": "latency_ms", "start": str(NOW - 60), "model": "b", "provider": "q"}
    (series,) = (await client.get("/admin/v1/tsdb/query", params=params)).json()["series"]
    assert (series["model"], series["provider"]) == ("b", "q")
    assert [p["count"] for p in series["points"]] == [1]


async def test_unknown_metric_is_an_empty_result(client: httpx.AsyncClient) -> None:
    """An unknown metric answers 200 with no series."""
    r = await client.get("/admin/v1/tsdb/query", params={"metric": "no_such_metric"})
    assert r.status_code == 200 and r.json()["series"] == []


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"step": "0"}, "invalid_step"),
        ({"step": "-60"}, "invalid_step"),
        ({"step": "0.5s"}, "invalid_step"),
        ({"step": "fast"}, "invalid_step"),
        ({"start": "100", "end": "100"}, "invalid_range"),
        ({"start": "200", "end": "100"}, "invalid_range"),
        ({"start": "0", "end": "86400", "step": "1"}, "too_many_buckets"),
        ({"start": "yesterday"}, "invalid_time"),
        ({"end": "nan"}, "invalid_time"),
        ({"group_by": "value"}, "invalid_group_by"),
    ],
)
async def test_bad_query_parameters_are_400(
    client: httpx.AsyncClient, params: dict[str, str], code: str
) -> None:
    """Invalid step (incl. below the 1 s resolution), window, time format, bucket count or
    group label answer 400 JSON."""
    r = await client.get("/admin/v1/tsdb/query", params={"metric": "latency_ms", **params})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == code


async def test_missing_metric_is_rejected(client: httpx.AsyncClient) -> None:
    """A query without metric= is a validation error, not a 500."""
    r = await client.get("/admin/v1/tsdb/query")
    assert r.status_code == 422
    assert r.json()["error"]["type"] == "invalid_request_error"


async def test_put_retention_then_prune(client: httpx.AsyncClient, tsdb: TSDB) -> None:
    """PUT retention stores the days; POST prune deletes what is older and reports it."""
    r = await client.put("/admin/v1/tsdb/retention", json={"days": 30})
    assert r.status_code == 200 and r.json() == {"days": 30}
    assert (await client.post("/admin/v1/tsdb/prune")).json() == {"deleted": 0}
    await client.put("/admin/v1/tsdb/retention", json={"days": 1})
    assert (await client.get("/admin/v1/tsdb/retention")).json() == {"days": 1}
    assert (await client.post("/admin/v1/tsdb/prune")).json() == {"deleted": 1}
    assert tsdb.retention_days == 1


@pytest.mark.parametrize(
    "body", [{"days": 0}, {"days": 3651}, {"days": "7"}, {"days": 7, "extra": 1}, {}]
)
async def test_bad_retention_bodies_are_422(
    client: httpx.AsyncClient, tsdb: TSDB, body: dict[str, Any]
) -> None:
    """Retention outside 1..3650, non-integers and unknown fields are refused."""
    r = await client.put("/admin/v1/tsdb/retention", json=body)
    assert r.status_code == 422
    assert tsdb.retention_days == 7
