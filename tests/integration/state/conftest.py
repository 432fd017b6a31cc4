"""A ``backend`` fixture parametrized over MemoryState and RedisState.

Memory time moves by advancing a fake clock; Redis time only by really sleeping, so
tests that wait use short spans (0.1-0.3 s). Each Redis test gets a random key prefix
and its keys are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import redis.asyncio as aioredis

from tokenhub.state.base import SharedState
from tokenhub.state.memory import MemoryState
from tokenhub.state.redis import RedisState


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    """One state under test plus the means to move its time and inspect subscribers."""

    name: str
    state: SharedState
    advance: Callable[[float], Awaitable[None]]
    subscribers: Callable[[str], Awaitable[int]]
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def random_prefix() -> str:
    return f"tokenhub-test:{uuid.uuid4().hex[:10]}:"


async def drop_prefix(url: str, prefix: str) -> None:
    """Delete every key a test created under its prefix."""
    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A fresh key prefix, its keys removed after the test."""
    prefix = random_prefix()
    yield prefix
    await drop_prefix(redis_url, prefix)


async def _memory_backend() -> Backend:
    clock = FakeClock()
    state = MemoryState(clock=clock)

    async def advance(seconds: float) -> None:
        clock.now += seconds

    async def subscribers(channel: str) -> int:
        return len(state._subscribers.get(channel, ()))

    return Backend("memory", state, advance, subscribers)


async def _redis_backend(url: str, prefix: str) -> Backend:
    state = RedisState(url, prefix=prefix)
    client = aioredis.Redis.from_url(url)

    async def advance(seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def subscribers(channel: str) -> int:
        counts = await client.pubsub_numsub(prefix + channel)
        return int(counts[0][1])

    return Backend("redis", state, advance, subscribers, [state.close, client.aclose])


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """The state under test, on each backend."""
    if request.param == "memory":
        yield await _memory_backend()
        return
    url = request.getfixturevalue("redis_url")  # a sync fixture: skips without Redis
    prefix = random_prefix()
    b = await _redis_backend(url, prefix)
    try:
        yield b
    finally:
        for close in b.closers:
            await close()
        await drop_prefix(url, prefix)
