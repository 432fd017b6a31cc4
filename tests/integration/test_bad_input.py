"""Every bad input gets a clear 4xx in the dialect of the endpoint it hit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Gateway, gateway_settings, run_gateway

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with run_gateway(gateway_settings(tmp_path, max_body_bytes="4096")) as g:
        yield g


def assert_openai_error(r: Any, status: int, needle: str) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert needle in err["message"], err
    assert err["type"]


def assert_anthropic_error(r: Any, status: int, needle: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == "error"
    assert needle in body["error"]["message"], body


BAD_OPENAI = [
    (b"{not json", "malformed JSON"),
    (b"[1, 2]", "body"),
    (b'{"model": "x"}', "messages"),
    (b'{"model": "x", "messages": []}', "messages"),
    (b'{"model": "x", "messages": "hello"}', "messages"),
    (b'{"model": "x", "messages": [{"role": "wizard", "content": "hi"}]}', "messages[0].role"),
    (b'{"model": "x", "messages": [{"role": "user", "content": 5}]}', "messages[0].content"),
    (
        b'{"model": "x", "messages": [{"role": "user", "content": "a"}], "temperature": "hot"}',
        "temperature",
    ),
    (
        b'{"model": "x", "messages": [{"role": "user", "content": "a"}], "max_tokens": -1}',
        "max_tokens",
    ),
    (b'{"model": 7, "messages": [{"role": "user", "content": "a"}]}', "model"),
    (b'{"model": "x", "messages": [{"role": "user", "content": "a"}], "stream": "yes"}', "stream"),
]


@pytest.mark.parametrize(("body", "needle"), BAD_OPENAI)
async def test_openai_surface_rejects_bad_bodies(gw: Gateway, body: bytes, needle: str) -> None:
    """Bad chat-completions bodies get a 400 OpenAI error naming the problem."""
    r = await gw.client.post(
        "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert_openai_error(r, 400, needle)


BAD_ANTHROPIC = [
    (b"{oops", "malformed JSON"),
    (b'{"model": "x", "messages": [{"role": "user", "content": "a"}]}', "max_tokens"),
    (b'{"model": "x", "max_tokens": 5}', "messages"),
    (
        b'{"model": "x", "max_tokens": 5, "messages": [{"role": "system", "content": "a"}]}',
        "messages[0].role",
    ),
    (
        b'{"model": "x", "max_tokens": "many", "messages": [{"role": "user", "content": "a"}]}',
        "max_tokens",
    ),
]


@pytest.mark.parametrize(("body", "needle"), BAD_ANTHROPIC)
async def test_anthropic_surface_rejects_bad_bodies(gw: Gateway, body: bytes, needle: str) -> None:
    """Bad messages bodies get a 400 Anthropic error naming the problem."""
    r = await gw.client.post("/v1/messages", content=body)
    assert_anthropic_error(r, 400, needle)


@pytest.mark.parametrize(
    ("policy", "needle"),
    [
        ({"mode": "yolo"}, "mode"),
        ({"max_budget_usd": 101}, "max_budget_usd"),
        ({"max_budget_usd": -1}, "max_budget_usd"),
        ({"max_latency_ms": 300001}, "max_latency_ms"),
        ({"min_weight": 11}, "min_weight"),
    ],
)
async def test_native_policy_ranges(gw: Gateway, policy: dict[str, Any], needle: str) -> None:
    """Out-of-range or unknown policy values are 400s naming the field."""
    r = await gw.client.post("/v1/chat", json={"request": {"messages": MSG}, "policy": policy})
    assert_openai_error(r, 400, needle)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/chat"])
async def test_oversized_body_is_413(gw: Gateway, path: str) -> None:
    """A body over TOKENHUB_MAX_BODY_BYTES is refused with 413."""
    big = {"model": "x", "max_tokens": 5, "messages": [{"role": "user", "content": "a" * 8000}]}
    r = await gw.client.post(path, json=big)
    assert r.status_code == 413
    if path == "/v1/messages":
        assert r.json()["error"]["type"] == "request_too_large"
    else:
        assert "exceeds" in r.json()["error"]["message"]


async def test_budget_too_small_lists_exclusions(gw: Gateway) -> None:
    """No eligible model is a 502 that says why each model was excluded."""
    r = await gw.client.post(
        "/v1/chat",
        json={
            "request": {"messages": MSG, "parameters": {"max_tokens": 100}},
            "policy": {"max_budget_usd": 0.0000001},
        },
    )
    assert r.status_code == 502
    excluded = r.json()["error"]["details"]["excluded"]
    assert set(excluded) == {"demo/tiny", "demo/small", "demo/medium", "demo/large"}
    assert all("budget" in why for why in excluded.values())


async def test_unknown_route_and_method(gw: Gateway) -> None:
    """Unknown paths are 404 and wrong methods 405, never 500."""
    assert (await gw.client.get("/v1/nope")).status_code == 404
    assert (await gw.client.get("/v1/chat/completions")).status_code in (404, 405)
