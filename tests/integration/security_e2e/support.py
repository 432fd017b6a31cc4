"""Shared helpers for the gateway-level security tests: a gateway in front of a fake
OpenAI upstream with one priced model, SDK clients, and key creation."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai

from tests.fakes.upstreams import FakeAnthropic, FakeOpenAI
from tests.integration.harness import Gateway, gateway_settings, run_gateway
from tests.integration.servers import serve_app
from tokenhub.app import build_app
from tokenhub.config import Settings

PROVIDER_KEY = "sk-test-openai-provider"
MODEL = "gpt-fake"
ANT_MODEL = "claude-fake"
INVALID_KEY = "missing or invalid api key"
PARAM = re.compile(r"\{[^}]+\}")
HELLO = [{"role": "user", "content": "hi"}]


@asynccontextmanager
async def openai_gateway(
    tmp_path: Path,
    upstream: FakeOpenAI,
    *,
    input_per_1k: float = 0.0,
    output_per_1k: float = 0.0,
    **env: str,
) -> AsyncIterator[Gateway]:
    """A gateway (demo off) routing ``MODEL`` to ``upstream`` at the given prices."""
    async with run_gateway(gateway_settings(tmp_path, demo="false", **env)) as g:
        await g.add_provider("oa", "openai", upstream.base_url, api_key=PROVIDER_KEY)
        await g.add_model(
            MODEL,
            "oa",
            weight=6,
            max_context_tokens=32000,
            input_per_1k=input_per_1k,
            output_per_1k=output_per_1k,
        )
        yield g


async def add_anthropic(g: Gateway, upstream: FakeAnthropic) -> None:
    """Route ``ANT_MODEL`` to a fake Anthropic upstream."""
    await g.add_provider("an", "anthropic", upstream.base_url, api_key="sk-ant-test-provider")
    await g.add_model(ANT_MODEL, "an", weight=6, max_context_tokens=32000)


async def new_key(g: Gateway, **fields: Any) -> tuple[str, dict[str, Any]]:
    """Create a client key through the admin API: (the key, its view)."""
    r = await g.admin.post("/admin/v1/apikeys", json={"name": "e2e", **fields})
    assert r.status_code == 201, r.text
    body = r.json()
    return body["key"], body


async def key_view(g: Gateway, key_id: str) -> dict[str, Any]:
    """The key as GET /admin/v1/apikeys lists it."""
    r = await g.admin.get("/admin/v1/apikeys")
    assert r.status_code == 200, r.text
    return next(k for k in r.json()["apikeys"] if k["id"] == key_id)


def oai(g: Gateway, key: str | None = None, **kw: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=g.v1, api_key=key or g.api_key, max_retries=0, **kw)


def ant(g: Gateway, key: str | None = None) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=g.url, api_key=key or g.api_key, max_retries=0)


def chat_body(model: str = MODEL, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": HELLO, **extra}


def messages_body(model: str = ANT_MODEL, **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 16, "messages": HELLO, **extra}


async def post_chat(
    g: Gateway, headers: dict[str, str] | None = None, **extra: Any
) -> httpx.Response:
    """POST /v1/chat/completions with raw httpx (no default key)."""
    async with httpx.AsyncClient(base_url=g.url, timeout=10) as c:
        return await c.post("/v1/chat/completions", json=chat_body(**extra), headers=headers)


@asynccontextmanager
async def serve_bare(settings: Settings) -> AsyncIterator[str]:
    """The gateway on its port with no harness clients (for start-ups the harness cannot
    drive, such as one without an admin token); yields its base URL."""
    async with serve_app(
        build_app(settings),
        host=settings.host,
        port=settings.port,
        lifespan="on",
        stop_timeout_s=15,
        proxy_headers=False,  # TokenHub resolves client addresses itself
    ) as url:
        yield url


def admin_routes(settings: Settings) -> list[tuple[str, str]]:
    """Every (method, path) of the FastAPI app under /admin/v1, path parameters filled
    with dummies. Routes are walked (FastAPI >= 0.165 keeps included routers as
    ``_IncludedRouter`` nodes) and joined with the OpenAPI paths, so none is missed."""
    api = build_app(settings).fallback
    found: set[tuple[str, str]] = set()
    _walk(getattr(api, "routes", []), found)
    for path, ops in api.openapi()["paths"].items():  # type: ignore[attr-defined]
        found.update((m.upper(), path) for m in ops)
    return sorted(
        {
            (m, PARAM.sub("dummy", p))
            for m, p in found
            if p.startswith("/admin/v1") and m not in ("HEAD", "OPTIONS")
        }
    )


def _walk(routes: Any, found: set[tuple[str, str]]) -> None:
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            _walk(inner.routes, found)
            continue
        path = getattr(route, "path", "")
        found.update((m, path) for m in getattr(route, "methods", None) or ())
