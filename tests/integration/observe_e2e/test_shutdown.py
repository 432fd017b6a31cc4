"""Graceful shutdown of the real server process loses no record of answered requests."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.integration.harness import ADMIN_TOKEN
from tests.integration.observe_e2e.helpers import chat_body

N = 200
SLOW_MS = 1500  # the slow model's answers are still being produced when the signal lands


@dataclass
class Server:
    """A ``python -m tokenhub`` child process and where it keeps its data."""

    proc: asyncio.subprocess.Process
    url: str
    db: Path
    log: Path


@dataclass
class Sent:
    """One request of the burst and what came back (``status`` 0: no response)."""

    rid: str
    kind: str  # plain | stream | slow | bad
    status: int = 0
    done_at: float = 0.0
    echoed: str = ""


def _env(tmp_path: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENHUB_")}
    env.update(
        TOKENHUB_DATA_DIR=str(tmp_path / "data"),
        TOKENHUB_CREDENTIALS_FILE=str(tmp_path / "credentials"),
        TOKENHUB_LISTEN_ADDR=f"127.0.0.1:{port}",
        TOKENHUB_ADMIN_TOKEN=ADMIN_TOKEN,
        TOKENHUB_DEMO="true",
        TOKENHUB_RATE_LIMIT_RPS="100000",
        TOKENHUB_RATE_LIMIT_BURST="100000",
        TOKENHUB_ADMIN_RATE_LIMIT_RPS="100000",
        TOKENHUB_ADMIN_RATE_LIMIT_BURST="100000",
    )
    return env


async def _wait_ready(url: str, proc: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=2) as c:
        for _ in range(300):
            if proc.returncode is not None:
                raise RuntimeError(f"gateway exited early with {proc.returncode}")
            try:
                if (await c.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("gateway did not become ready")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tokenhub", env=_env(tmp_path, port), stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(url, proc)
        yield Server(proc, url, tmp_path / "data" / "tokenhub.db", log)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _setup(s: Server) -> str:
    """A client key, a fast and a slow mock provider."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=s.url, headers=headers, timeout=10) as admin:
        r = await admin.post("/admin/v1/apikeys", json={"name": "shutdown"})
        assert r.status_code == 201, r.text
        key = str(r.json()["key"])
        # Two real providers (the demo models step aside once one exists): the plain and
        # streamed requests are answered at once, the slow ones are still being produced
        # when the signal lands.
        for pid, latency_ms in (("fast", 5), ("slow", SLOW_MS)):
            opts = {"latency_ms": latency_ms, "models": [f"{pid}/m"]}
            r = await admin.post(
                "/admin/v1/providers", json={"id": pid, "type": "mock", "options": opts}
            )
            assert r.status_code == 201, r.text
            model = {"id": f"{pid}/m", "provider_id": pid}
            r = await admin.post("/admin/v1/models", json=model)
            assert r.status_code == 201, r.text
        return key


def _plan(i: int) -> Sent:
    kinds = ("plain", "stream", "slow", "bad", "plain")
    return Sent(rid=f"sd-{i:04d}-{kinds[i % 5]}", kind=kinds[i % 5])


async def _fire(c: httpx.AsyncClient, sent: Sent) -> None:
    headers = {"X-Request-ID": sent.rid}
    try:
        if sent.kind == "bad":
            body = b"{not json" if sent.rid.endswith("0-bad") else b'{"messages": "nope"}'
            r = await c.post("/v1/chat/completions", content=body, headers=headers)
        else:
            model = "slow/m" if sent.kind == "slow" else "fast/m"
            body_json = chat_body(model, stream=sent.kind == "stream")
            r = await c.post("/v1/chat/completions", json=body_json, headers=headers)
        sent.status, sent.done_at = r.status_code, time.monotonic()
        sent.echoed = r.headers.get("x-request-id", "")
    except httpx.TransportError:
        pass  # refused or cut: the server never answered, so it owes no record


async def _until_answered(burst: list[Sent], tasks: list[asyncio.Task[None]], n: int) -> None:
    deadline = time.monotonic() + 20
    while sum(s.status > 0 for s in burst) < n and not all(t.done() for t in tasks):
        assert time.monotonic() < deadline, "the burst got no answers"
        await asyncio.sleep(0.01)


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_mid_burst_keeps_every_answered_request(
    server: Server, sig: signal.Signals
) -> None:
    """After a signal mid-burst the process drains, exits cleanly, and every answered
    request has its request-log row, its reward rows and its TSDB points."""
    key = await _setup(server)
    burst = [_plan(i) for i in range(N)]
    limits = httpx.Limits(max_connections=N + 10, max_keepalive_connections=0)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        base_url=server.url, headers=headers, timeout=30, limits=limits
    ) as c:
        tasks = [asyncio.create_task(_fire(c, s)) for s in burst]
        await _until_answered(burst, tasks, N // 4)
        signalled_at = time.monotonic()
        server.proc.send_signal(sig)
        await asyncio.gather(*tasks)
    code = await asyncio.wait_for(server.proc.wait(), 40)
    log = server.log.read_text()
    # uvicorn re-raises the captured signal after a graceful shutdown; dying of that
    # signal (or exiting 0 when it is handled) is the clean end, a traceback is not.
    assert code in (0, -sig), log[-3000:]
    assert "Application shutdown complete" in log
    assert '"level":"error"' not in log and "Traceback" not in log, log[-3000:]

    answered = [s for s in burst if s.status]
    assert all(s.echoed == s.rid for s in answered), "X-Request-ID not echoed"
    assert {s.status for s in answered} <= {200, 400}
    assert all(s.status == 400 for s in answered if s.kind == "bad")
    assert all(s.status == 200 for s in answered if s.kind != "bad")
    drained = [s for s in answered if s.kind == "slow" and s.done_at > signalled_at]
    assert drained, "no request was in flight when the signal arrived"

    logged = dict(_rows(server.db, "SELECT request_id, status FROM request_log"))
    for s in answered:
        assert logged.get(s.rid) == s.status, s
    rewarded = {r[0] for r in _rows(server.db, "SELECT request_id FROM reward_log WHERE success")}
    routed = [s for s in answered if s.status == 200]
    assert {s.rid for s in routed} <= rewarded
    streamed = _rows(server.db, "SELECT COUNT(*) FROM request_log WHERE stream AND status = 200")
    assert streamed[0][0] >= sum(s.kind == "stream" for s in routed)
    points = dict(_rows(server.db, 'SELECT metric, SUM("count") FROM tsdb_points GROUP BY metric'))
    assert points.get("latency_ms", 0) >= len(routed)
    assert points.get("ttft_ms", 0) >= sum(s.kind == "stream" for s in routed)


async def test_sigterm_with_event_subscriber_connected_exits_promptly(server: Server) -> None:
    """An open /admin/v1/events stream ends on SIGTERM instead of holding the drain
    up for the 30 s graceful timeout."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with (
        httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as c,
        c.stream("GET", "/admin/v1/events") as r,
    ):
        assert r.status_code == 200
        chunks = r.aiter_bytes()
        assert (await anext(chunks)).startswith(b": connected")
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        async for _ in chunks:  # the stream ends rather than being cut after 30 s
            pass
        code = await asyncio.wait_for(server.proc.wait(), 40)
    assert time.monotonic() - signalled < 5
    assert code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.log.read_text()
