"""Shared helpers for the gateway-level observability tests: polling, metrics, SSE."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import Gateway

T = TypeVar("T")

MSG = [{"role": "user", "content": "hello there gateway"}]


def chat_body(model: str, *, stream: bool = False, text: str = "") -> dict[str, Any]:
    """An OpenAI chat-completions body for ``model`` (streamed when asked)."""
    messages = [{"role": "user", "content": text}] if text else MSG
    body: dict[str, Any] = {"model": model, "messages": messages}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


async def eventually(
    probe: Callable[[], Awaitable[T | None]], within_s: float = 5.0, interval: float = 0.05
) -> T:
    """Poll ``probe`` until it returns something truthy; the recorder flushes in batches
    every 0.25 s, so results show up a little after the response."""
    deadline = time.monotonic() + within_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {within_s}s (last value {last!r})")


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str) -> Samples:
    """Every sample of a Prometheus text page, keyed by (sample name, label set)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = float(s.value)
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def scrape(g: Gateway) -> Samples:
    """``GET /metrics`` parsed."""
    r = await g.admin.get("/metrics")
    assert r.status_code == 200, r.text
    return parse_metrics(r.text)


async def chat(g: Gateway, model: str, *, stream: bool = False) -> httpx.Response:
    """One OpenAI-surface request with the harness client key (body read in full)."""
    return await g.client.post("/v1/chat/completions", json=chat_body(model, stream=stream))


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """``(event type, data)`` for each SSE frame of a streamed response; a comment
    frame comes as ``(": text", {})`` (the bus sends ``: connected`` once subscribed)."""
    buffer = b""
    async for piece in response.aiter_bytes():
        buffer += piece
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            kind, data = "", b""
            for line in frame.split(b"\n"):
                if line.startswith(b"event: "):
                    kind = line[7:].decode()
                elif line.startswith(b"data: "):
                    data = line[6:]
            if frame.startswith(b":"):
                yield frame.decode(), {}
            elif kind and data:
                yield kind, orjson.loads(data)
