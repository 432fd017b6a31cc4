"""Planted secrets (provider keys, a client key, the vault password, the admin token)
never surface: not in responses, headers, logs at DEBUG (plain or JSON), audit rows,
metrics or request logs, even when an upstream echoes the Authorization header back."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.upstreams import FakeOpenAI, Reply
from tests.integration.harness import ADMIN_TOKEN, Gateway, gateway_settings, run_gateway
from tokenhub.logs import JsonFormatter

KEY_A = "sk-PLANTED-PROVIDER-1234"
KEY_B = "sk-PLANTED-PROVIDER-5678"
KEY_C = "sk-PLANTED-PROVIDER-9012"
VAULT_PASSWORD = "PLANTED-VAULT-PASSWORD-42"


def echo(status: int, key: str) -> Reply:
    """An upstream error whose body repeats the Authorization header it was sent."""
    message = f"invalid credentials: Authorization: Bearer {key}"
    body = {"error": {"message": message, "type": "invalid_request_error", "code": key}}
    return Reply(status=status, body=body, headers={"X-Echo-Auth": f"Bearer {key}"})


class Capture:
    """Everything the gateway said: response bodies and headers, in order."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def add(self, r: httpx.Response) -> httpx.Response:
        self.parts.append(r.text)
        self.parts.extend(f"{k}: {v}" for k, v in r.headers.items())
        return r


@contextlib.asynccontextmanager
async def json_logs() -> AsyncIterator[io.StringIO]:
    """Root logger at DEBUG through tokenhub's JSON formatter, into a buffer."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


async def traffic(g: Gateway, key: str, cap: Capture) -> None:
    """Successes, failovers through echoing upstreams, client errors and a stream."""
    async with httpx.AsyncClient(base_url=g.url, timeout=10) as c:
        auth = {"Authorization": f"Bearer {key}"}
        for model in ("model-a", "model-b", "model-c", "nope"):
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            cap.add(await c.post("/v1/chat/completions", json=body, headers=auth))
            cap.add(await c.post("/v1/chat", json=body, headers=auth))
        stream = {
            "model": "model-c",
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        }
        cap.add(await c.post("/v1/chat/completions", json=stream, headers=auth))
        msg = {"model": "model-a", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}
        cap.add(await c.post("/v1/messages", json=msg, headers={"x-api-key": key}))
        cap.add(await c.post("/v1/chat/completions", content=b"{", headers=auth))
        cap.add(
            await c.post("/v1/chat/completions", json={}, headers={"Authorization": "Bearer x"})
        )


async def admin_reads(g: Gateway, cap: Capture) -> None:
    """Every read an operator would make, traces of each logged request included."""
    for path in (
        "/admin/v1/providers",
        "/admin/v1/apikeys",
        "/admin/v1/audit?limit=1000",
        "/admin/v1/stats",
        "/admin/v1/health",
        "/admin/v1/info",
        "/admin/v1/vault/secrets",
        "/admin/v1/models",
        "/admin/v1/rewards",
        "/metrics",
        "/admin/v1/metrics",
    ):
        cap.add(await g.admin.get(path))
    logs = cap.add(await g.admin.get("/admin/v1/logs", params={"limit": 500}))
    rows = logs.json()["logs"]
    assert len(rows) >= 10
    for row in rows:
        detail = cap.add(await g.admin.get(f"/admin/v1/logs/{row['request_id']}"))
        assert detail.status_code == 200


async def wait_for_logs(g: Gateway, n: int) -> None:
    for _ in range(100):
        r = await g.admin.get("/admin/v1/logs", params={"limit": 500})
        if r.status_code == 200 and r.text.count("request_id") >= n:
            return
        await asyncio.sleep(0.05)


async def read_events(g: Gateway, into: list[str]) -> None:
    async with g.admin.stream("GET", "/admin/v1/events") as r:
        async for chunk in r.aiter_text():
            into.append(chunk)


async def test_no_planted_secret_surfaces_anywhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Across traffic, failover, errors and admin reads, no planted secret appears in any
    captured output; the client key appears only in its one create response."""
    caplog.set_level(logging.DEBUG)
    cap, events = Capture(), []
    async with (
        json_logs() as json_out,
        FakeOpenAI() as up_a,
        FakeOpenAI() as up_b,
        FakeOpenAI() as up_c,
    ):
        up_a.script(*[echo(401, KEY_A) for _ in range(20)])
        up_b.script(*[echo(500, KEY_B) for _ in range(20)])
        settings = gateway_settings(tmp_path, demo="false", log_level="debug")
        async with run_gateway(settings) as g:
            watcher = asyncio.create_task(read_events(g, events))
            cap.add(await g.admin.post("/admin/v1/vault/init", json={"password": VAULT_PASSWORD}))
            for pid, up, key in (("pa", up_a, KEY_A), ("pb", up_b, KEY_B), ("pc", up_c, KEY_C)):
                await g.add_provider(pid, "openai", up.base_url, api_key=key)
            await g.add_model("model-a", "pa", weight=9, max_context_tokens=32000)
            await g.add_model("model-b", "pb", weight=8, max_context_tokens=32000)
            await g.add_model("model-c", "pc", weight=7, max_context_tokens=32000)
            created = await g.admin.post("/admin/v1/apikeys", json={"name": "planted"})
            client_key = created.json()["key"]
            await traffic(g, client_key, cap)
            await wait_for_logs(g, 10)
            await admin_reads(g, cap)
            cap.add(await g.admin.post("/admin/v1/vault/lock"))
            cap.add(await g.admin.post("/admin/v1/vault/unlock", json={"password": "wrong-pass-1"}))
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await watcher
        logged = json_out.getvalue()
    assert up_a.requests and up_b.requests and up_c.requests  # every path was exercised
    assert up_a.requests[0].headers["Authorization"] == f"Bearer {KEY_A}"
    texts = {
        "responses": "\n".join(cap.parts),
        "json logs": logged,
        "caplog": caplog.text + "\n".join(repr(r.__dict__) for r in caplog.records),
        "events": "".join(events),
    }
    assert logged.count("\n") > 10
    assert len(texts["responses"]) > 5000 and "model-c" in texts["responses"]
    secrets = {
        "provider key a": KEY_A,
        "provider key b": KEY_B,
        "provider key c": KEY_C,
        "vault password": VAULT_PASSWORD,
        "admin token": ADMIN_TOKEN,
        "client key": client_key,
        "harness key": g.api_key,
    }
    for where, text in texts.items():
        for what, secret in secrets.items():
            assert secret not in text, f"{what} leaked into {where}"
    assert client_key in created.text  # shown once, at creation
