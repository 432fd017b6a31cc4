"""vLLM endpoint spreading: round-robin, cooldown of failed endpoints, injected clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.upstreams import FakeOpenAI, Reply
from tests.unit.providers.conftest import FakeClock, Harness, dead_url, hello, make_adapter
from tokenhub.errors import ProviderError
from tokenhub.types import ErrorClass


@pytest.fixture
async def pair() -> AsyncIterator[tuple[FakeOpenAI, FakeOpenAI]]:
    """Two fake vLLM endpoints."""
    async with FakeOpenAI() as a, FakeOpenAI() as b:
        yield a, b


def hits(*ups: FakeOpenAI) -> list[int]:
    return [len(u.requests) for u in ups]


async def run(harness: Harness, n: int) -> list[BaseException | None]:
    """Make ``n`` calls, recording failures instead of raising."""
    results: list[BaseException | None] = []
    for _ in range(n):
        try:
            await harness.adapter.complete(hello(), harness.target())
            results.append(None)
        except ProviderError as exc:
            results.append(exc)
    return results


async def test_round_robin_per_call(pair: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    """Healthy endpoints take turns, one call each."""
    a, b = pair
    clock = FakeClock()
    adapter = make_adapter("vllm", [a.base_url, b.base_url], clock)
    try:
        harness = Harness("vllm", adapter, a, clock)
        await run(harness, 1)
        assert hits(a, b) == [1, 0]
        await run(harness, 1)
        assert hits(a, b) == [1, 1]
        await run(harness, 2)
        assert hits(a, b) == [2, 2]
    finally:
        await adapter.close()


async def test_failed_endpoint_skipped_until_cooldown_ends(
    pair: tuple[FakeOpenAI, FakeOpenAI],
) -> None:
    """A 5xx puts the endpoint in cooldown; the clock moving past it brings it back."""
    a, b = pair
    a.script(Reply(status=500))
    clock = FakeClock()
    adapter = make_adapter("vllm", [a.base_url, b.base_url], clock, endpoint_cooldown_s=10)
    try:
        harness = Harness("vllm", adapter, a, clock)
        first = await run(harness, 1)
        assert isinstance(first[0], ProviderError)
        assert await run(harness, 3) == [None, None, None]
        assert hits(a, b) == [1, 3]
        clock.now += 10.5
        await run(harness, 2)
        assert hits(a, b) == [2, 4]
    finally:
        await adapter.close()


async def test_refused_endpoint_skipped(pair: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    """A dead endpoint fails once with a transient error and is then avoided."""
    a, _ = pair
    clock = FakeClock()
    adapter = make_adapter("vllm", [dead_url(), a.base_url], clock)
    try:
        results = await run(Harness("vllm", adapter, a, clock), 4)
        assert isinstance(results[0], ProviderError)
        assert results[0].error_class == ErrorClass.TRANSIENT
        assert results[1:] == [None, None, None]
        assert hits(a) == [3]
    finally:
        await adapter.close()


async def test_all_cooling_uses_earliest_to_recover(pair: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    """With every endpoint cooling down, the one whose cooldown ends first is tried."""
    a, b = pair
    a.script(Reply(status=503))
    b.script(Reply(status=503))
    clock = FakeClock()
    adapter = make_adapter("vllm", [a.base_url, b.base_url], clock)
    try:
        harness = Harness("vllm", adapter, a, clock)
        await run(harness, 1)  # a fails at t=1000
        clock.now += 1
        await run(harness, 1)  # b fails at t=1001
        assert await run(harness, 1) == [None]
        assert hits(a, b) == [2, 1]
        # a succeeded, so its cooldown is over: back to alternating
        await run(harness, 1)
        assert hits(a, b) == [3, 1]
    finally:
        await adapter.close()


async def test_rate_limit_does_not_cool_endpoint(pair: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    """A 429 is the router's business; the endpoint stays in rotation."""
    a, b = pair
    a.script(Reply(status=429))
    clock = FakeClock()
    adapter = make_adapter("vllm", [a.base_url, b.base_url], clock)
    try:
        await run(Harness("vllm", adapter, a, clock), 3)
        assert hits(a, b) == [2, 1]
    finally:
        await adapter.close()


async def test_mid_stream_drop_cools_endpoint(pair: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    """A stream cut mid-way counts as a transient failure of that endpoint."""
    a, b = pair
    a.script(Reply(break_after=2))
    clock = FakeClock()
    adapter = make_adapter("vllm", [a.base_url, b.base_url], clock)
    harness = Harness("vllm", adapter, a, clock)
    try:
        with pytest.raises(ProviderError):
            _ = [c async for c in adapter.stream(hello(), harness.target())]
        await run(harness, 2)
        assert hits(a, b) == [1, 2]
    finally:
        await adapter.close()
