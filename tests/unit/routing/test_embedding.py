"""EmbeddingRouter: which embedding model takes a request, and failover between them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.fakes.upstreams import FakeOpenAI, Reply
from tests.unit.routing.fakes import FakeClock
from tokenhub.errors import NoEligibleModel, ServiceUnavailable, TooManyRequests, UpstreamFailed
from tokenhub.observe.health import HealthTracker
from tokenhub.providers.embeddings import EmbeddingRequest, EmbeddingResponse
from tokenhub.providers.mock import mock_vector
from tokenhub.providers.registry import create_adapter
from tokenhub.routing.catalog import Catalog
from tokenhub.routing.embedding import EmbeddingRouter
from tokenhub.types import ErrorClass, ModelConfig, ProviderConfig, Target

EMBED = {"kind": "embedding"}


class BrokenEmbedder:
    """An embedder with a bug: it raises something that is not a ProviderError."""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config

    async def embed(self, req: EmbeddingRequest, target: Target) -> EmbeddingResponse:
        raise RuntimeError("bug")

    async def close(self) -> None:
        """Nothing to release."""


class World:
    """A catalog of real adapters (mock and OpenAI-compatible) and a router over it."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.catalog = Catalog(self._adapter)
        self.health = HealthTracker(clock=self.clock)
        self.router = EmbeddingRouter(self.catalog, self.health, timeout_s=2.0, clock=self.clock)

    def _adapter(self, cfg: ProviderConfig) -> Any:
        if cfg.type == "broken":
            return BrokenEmbedder(cfg)
        return create_adapter(cfg, lambda pid: None)

    async def provider(self, pid: str, ptype: str = "mock", url: str = "", **opts: Any) -> None:
        urls = [url] if url else []
        await self.catalog.set_provider(ProviderConfig(pid, ptype, urls, options=opts))

    def model(self, mid: str, pid: str, price: float = 0.0, **kw: Any) -> None:
        labels = kw.pop("labels", EMBED)
        self.catalog.set_model(ModelConfig(mid, pid, input_per_1k=price, labels=labels, **kw))


@pytest.fixture
async def world() -> AsyncIterator[World]:
    """An empty world, its adapters closed after the test."""
    w = World()
    try:
        yield w
    finally:
        await w.catalog.close()


def req(*texts: str, model: str | None = None) -> EmbeddingRequest:
    return EmbeddingRequest(inputs=list(texts) or ["hello world"], model=model, request_id="r1")


async def test_cheapest_embedding_model_wins_and_chat_models_are_ignored(world: World) -> None:
    """Without a hint the cheapest embedding model answers; chat models never do."""
    await world.provider("p")
    world.model("chat", "p", 0.0, labels={})
    world.model("dear", "p", 0.5)
    world.model("cheap", "p", 0.1)
    resp, decision = await world.router.embed(req("a b"))
    assert decision.model is not None and decision.model.id == "cheap"
    assert decision.reason == "cheapest-embedding"
    assert decision.ranked == [("cheap", 0.1), ("dear", 0.5)]
    assert resp.vectors == [mock_vector("a b", 8)]
    assert resp.usage.prompt_tokens == 2


async def test_a_hint_naming_an_embedding_model_goes_first(world: World) -> None:
    """A hint naming an embedding model is tried first, whatever its price."""
    await world.provider("p")
    world.model("cheap", "p", 0.1)
    world.model("dear", "p", 0.5, upstream_id="vendor/dear")
    _, decision = await world.router.embed(req(model="vendor/dear"))
    assert decision.model is not None and decision.model.id == "dear"
    assert decision.reason == "model-hint"


async def test_a_hint_naming_a_chat_model_is_excluded(world: World) -> None:
    """A hint naming a chat model is noted as excluded and routing goes on."""
    await world.provider("p")
    world.model("chat", "p", labels={})
    world.model("emb", "p")
    _, decision = await world.router.embed(req(model="chat"))
    assert decision.model is not None and decision.model.id == "emb"
    assert decision.excluded == {"chat": "not an embedding model"}


async def test_no_embedding_model_is_no_eligible_model(world: World) -> None:
    """With no embedding model routable the router raises NoEligibleModel with the trace."""
    await world.provider("p")
    await world.provider("a", "anthropic", "http://127.0.0.1:9")
    world.model("chat", "p", labels={})
    world.model("claude-emb", "a")
    world.model("off", "p", enabled=False)
    with pytest.raises(NoEligibleModel) as info:
        world.router.prepare(req())
    excluded = info.value.details["excluded"]  # type: ignore[index]
    assert excluded == {"claude-emb": "provider a cannot embed"}
    assert info.value.decision is not None and info.value.decision.excluded == excluded


async def test_context_budget_and_health_exclude_models(world: World) -> None:
    """Too-small context, over-budget cost and a cooling provider each exclude a model."""
    await world.provider("p")
    await world.provider("q")
    world.model("small", "p", max_context_tokens=2)
    world.model("pricey", "p", 1000.0)
    world.model("cooling", "q")
    world.model("fine", "p", 0.001)
    world.health.cool_down("q", 10, "rate limited (429)")
    plan = world.router.prepare(req("one two three four"), max_budget_usd=0.001)
    assert [m.id for m in plan.candidates] == ["fine"]
    assert plan.decision.excluded["small"].startswith("context:")
    assert "over budget" in plan.decision.excluded["pricey"]
    assert plan.decision.excluded["cooling"].startswith("provider q unavailable")
    assert plan.max_cost_usd == pytest.approx(plan.input_tokens * 0.001 / 1000)


async def test_a_gated_provider_is_service_unavailable(world: World) -> None:
    """When only the provider gate (a locked vault) blocks, the error is a 503."""
    await world.provider("p")
    world.model("emb", "p")
    world.router.provider_gate = lambda pid: "vault is locked"
    with pytest.raises(ServiceUnavailable) as info:
        world.router.prepare(req())
    assert info.value.message == "vault is locked"


async def test_transient_failure_fails_over_to_the_next_model(
    world: World, fake_openai: FakeOpenAI
) -> None:
    """A 5xx from the first model moves on to the next; health learns of both calls."""
    fake_openai.script(Reply(status=503))
    await world.provider("up", "openai", fake_openai.base_url)
    await world.provider("m")
    world.model("remote", "up", 0.01)
    world.model("local", "m", 0.02)
    resp, decision = await world.router.embed(req("x"))
    assert decision.model is not None and decision.model.id == "local"
    assert decision.reason == "failover-transient"
    assert [(a.model, a.error_class, a.status) for a in decision.attempts] == [
        ("remote", ErrorClass.TRANSIENT, 503),
        ("local", None, None),
    ]
    assert world.health.state("up").last_error_class == "transient"
    assert resp.vectors == [mock_vector("x", 8)]


async def test_rate_limit_cools_the_provider_and_skips_its_models(
    world: World, fake_openai: FakeOpenAI
) -> None:
    """A 429 cools its provider for Retry-After and skips that provider's other models."""
    fake_openai.script(Reply(status=429, headers={"Retry-After": "7"}))
    await world.provider("up", "openai", fake_openai.base_url)
    await world.provider("m")
    world.model("r1", "up", 0.01)
    world.model("r2", "up", 0.02)
    world.model("local", "m", 0.03)
    _, decision = await world.router.embed(req())
    assert decision.model is not None and decision.model.id == "local"
    assert decision.reason == "failover-rate-limited"
    assert [a.model for a in decision.attempts] == ["r1", "local"]
    assert len(fake_openai.requests) == 1
    assert world.health.cooldown_remaining("up") == pytest.approx(7.0)


async def test_all_rate_limited_is_too_many_requests(world: World) -> None:
    """When every tried provider is rate limited the client gets a 429 with Retry-After."""
    await world.provider("p", failure_rate=1.0, error_status=429)
    world.model("emb", "p")
    with pytest.raises(TooManyRequests) as info:
        await world.router.embed(req())
    assert info.value.retry_after == pytest.approx(world.router.rate_limit_cooldown_s)
    assert info.value.decision is not None and info.value.decision.reason == "all-failed"


async def test_at_most_three_models_are_tried(world: World) -> None:
    """Failover stops after max_attempts (3) models and raises UpstreamFailed."""
    for i in range(4):
        await world.provider(f"p{i}", failure_rate=1.0, error_status=500)
        world.model(f"e{i}", f"p{i}", float(i))
    with pytest.raises(UpstreamFailed) as info:
        await world.router.embed(req())
    attempts = info.value.details["attempts"]  # type: ignore[index]
    assert [a["model"] for a in attempts] == ["e0", "e1", "e2"]
    assert {a["error_class"] for a in attempts} == {"transient"}


async def test_an_adapter_bug_is_a_fatal_attempt_not_a_crash(world: World) -> None:
    """An adapter raising an unexpected exception counts as a fatal failure."""
    await world.provider("p", "broken")
    await world.provider("q")
    world.model("broken", "p", 0.0)
    world.model("good", "q", 1.0)
    _, decision = await world.router.embed(req())
    assert decision.model is not None and decision.model.id == "good"
    assert decision.reason == "failover-fatal"
    assert decision.attempts[0].error_class == ErrorClass.FATAL
    assert decision.attempts[0].message == "adapter error (RuntimeError)"
