"""Fixtures for the adapter conformance suite: each network adapter against its fake."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from tests.fakes.fixtures import fake_anthropic, fake_openai
from tests.fakes.upstreams import FakeAnthropic, FakeOpenAI, FakeUpstream
from tokenhub.providers.base import Adapter
from tokenhub.providers.registry import create_adapter
from tokenhub.types import ChatRequest, Message, ModelConfig, ProviderConfig, Target

__all__ = ["fake_anthropic", "fake_openai"]

API_KEY = "sk-test-SECRET0123456789"
NETWORK_KINDS = ("openai", "vllm", "anthropic")


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    """One adapter wired to its fake upstream."""

    kind: str
    adapter: Adapter
    upstream: FakeUpstream  # for the mock: an idle FakeOpenAI nobody calls
    clock: FakeClock = field(default_factory=FakeClock)

    def target(self, timeout_s: float = 5.0, request_id: str = "req-123") -> Target:
        """A target for model ``m1`` (upstream name ``up-m1``)."""
        model = ModelConfig(id="m1", provider_id=self.kind, upstream_id="up-m1")
        return Target(model=model, request_id=request_id, timeout_s=timeout_s)


def credentials(provider_id: str) -> str | None:
    """Keys for the keyed providers only, as the vault would hand them out."""
    return API_KEY if provider_id in ("openai", "anthropic") else None


def make_adapter(kind: str, base_urls: list[str], clock: FakeClock, **options: object) -> Adapter:
    """An adapter of ``kind`` whose provider id equals its type."""
    config = ProviderConfig(id=kind, type=kind, base_urls=base_urls, options=dict(options))
    return create_adapter(config, credentials, clock=clock)


def dead_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def hello(text: str = "hi") -> ChatRequest:
    """A one-message request."""
    return ChatRequest(messages=[Message(role="user", content=text)])


@pytest.fixture(params=NETWORK_KINDS)
async def net(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """Each network adapter (openai, vllm, anthropic) against a started fake upstream."""
    kind: str = request.param
    upstream: FakeUpstream = FakeAnthropic() if kind == "anthropic" else FakeOpenAI()
    clock = FakeClock()
    async with upstream:
        adapter = make_adapter(kind, [upstream.base_url], clock)
        try:
            yield Harness(kind, adapter, upstream, clock)
        finally:
            await adapter.close()


@pytest.fixture(params=(*NETWORK_KINDS, "mock"))
async def any_adapter(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """Every adapter type, the network ones against their fake upstream."""
    kind: str = request.param
    upstream: FakeUpstream = FakeAnthropic() if kind == "anthropic" else FakeOpenAI()
    clock = FakeClock()
    async with upstream:
        urls = [] if kind == "mock" else [upstream.base_url]
        adapter = make_adapter(kind, urls, clock)
        try:
            yield Harness(kind, adapter, upstream, clock)
        finally:
            await adapter.close()
