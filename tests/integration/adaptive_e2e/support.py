"""Shared helpers for the adaptive-routing end-to-end tests: a real gateway in front of
fake upstreams, client keys with chosen scopes, SDK clients and polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import anthropic
import httpx
import openai

from tests.fakes.upstreams import FakeAnthropic, FakeOpenAI
from tests.integration.harness import Gateway, gateway_settings, run_gateway
from tokenhub.config import Settings

T = TypeVar("T")

# Prices per 1k tokens: "big" is the strong, dear model; "small" the weak, cheap one.
BIG = {"weight": 9, "input_per_1k": 0.01, "output_per_1k": 0.03, "max_context_tokens": 32000}
SMALL = {"weight": 3, "input_per_1k": 0.0001, "output_per_1k": 0.0002, "max_context_tokens": 32000}
CLAUDE = {"weight": 6, "input_per_1k": 0.003, "output_per_1k": 0.015, "max_context_tokens": 32000}


def settings(tmp_path: Path, **env: str) -> Settings:
    """Gateway settings with the demo models off."""
    return gateway_settings(tmp_path, demo="false", **env)


@asynccontextmanager
async def gateway(
    tmp_path: Path, up: FakeOpenAI, ant: FakeAnthropic | None = None, **env: str
) -> AsyncIterator[Gateway]:
    """A gateway routing "big" and "small" to ``up`` and "claude-x" to ``ant``."""
    async with run_gateway(settings(tmp_path, **env)) as g:
        await g.add_provider("oa", "openai", up.base_url, api_key="sk-fake-oa")
        await g.add_model("big", "oa", **BIG)
        await g.add_model("small", "oa", **SMALL)
        if ant is not None:
            await g.add_provider("an", "anthropic", ant.base_url, api_key="sk-ant-fake")
            await g.add_model("claude-x", "an", **CLAUDE)
        yield g


async def new_key(g: Gateway, *scopes: str, name: str = "e2e") -> tuple[str, str]:
    """A fresh client key with ``scopes`` (all when empty): (key, key id)."""
    body: dict[str, Any] = {"name": name}
    if scopes:
        body["scopes"] = list(scopes)
    r = await g.admin.post("/admin/v1/apikeys", json=body)
    assert r.status_code == 201, r.text
    data = r.json()
    return data["key"], data["id"]


def client_for(g: Gateway, key: str) -> httpx.AsyncClient:
    """An httpx client on the gateway carrying ``key``."""
    return httpx.AsyncClient(base_url=g.url, timeout=10, headers={"Authorization": f"Bearer {key}"})


def oai(g: Gateway, key: str | None = None) -> openai.AsyncOpenAI:
    """The official OpenAI SDK pointed at the gateway."""
    return openai.AsyncOpenAI(base_url=g.v1, api_key=key or g.api_key, max_retries=0)


def ant_sdk(g: Gateway, key: str | None = None) -> anthropic.AsyncAnthropic:
    """The official Anthropic SDK pointed at the gateway."""
    return anthropic.AsyncAnthropic(base_url=g.url, api_key=key or g.api_key, max_retries=0)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def upstream_models(up: FakeOpenAI | FakeAnthropic) -> list[str]:
    """The model of every request the fake received, in order."""
    return [r.json["model"] for r in up.requests if isinstance(r.json, dict)]


async def eventually(
    probe: Callable[[], Awaitable[T | None]], within_s: float = 5.0, interval: float = 0.05
) -> T:
    """Poll ``probe`` until it is truthy (the recorder flushes every 0.25 s)."""
    deadline = time.monotonic() + within_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {within_s}s (last value {last!r})")


async def log_row(g: Gateway, request_id: str) -> dict[str, Any]:
    """The request-log row of ``request_id`` once the recorder has written it."""

    async def probe() -> dict[str, Any] | None:
        r = await g.admin.get(f"/admin/v1/logs/{request_id}")
        return r.json() if r.status_code == 200 else None

    return await eventually(probe)
