"""RedisState behaviour beyond the shared contract: replicas, keys, secrets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tests.conftest import free_port
from tests.integration.state.conftest import drop_prefix, random_prefix
from tokenhub.state.redis import RedisState

pytestmark = pytest.mark.redis


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    """A random key prefix whose keys are removed after the test."""
    value = random_prefix()
    yield value
    await drop_prefix(redis_url, value)


@pytest.fixture
async def replicas(redis_url: str, prefix: str) -> AsyncIterator[tuple[RedisState, RedisState]]:
    """Two RedisState instances on one prefix, as two gateway replicas would be."""
    a, b = RedisState(redis_url, prefix=prefix), RedisState(redis_url, prefix=prefix)
    yield a, b
    await a.close()
    await b.close()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client to look at what RedisState stored."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_reserve_is_atomic_across_two_replicas(
    replicas: tuple[RedisState, RedisState],
) -> None:
    """200 concurrent reserves split over two replicas never pass the limit."""
    a, b = replicas
    calls = [(a if i % 2 else b).reserve("budget", 1, 50, ttl_s=5) for i in range(200)]
    results = await asyncio.gather(*calls)
    assert sum(results) == 50
    assert await a.get_int("budget") == 50


async def test_token_bucket_is_shared_across_replicas(
    replicas: tuple[RedisState, RedisState],
) -> None:
    """Two replicas draw from one bucket: burst 10 admits 10 requests in total."""
    a, b = replicas
    calls = [(a if i % 2 else b).take("ip", 1.0, 10) for i in range(40)]
    waits = await asyncio.gather(*calls)
    assert sum(1 for w in waits if w == 0.0) == 10


async def test_pubsub_crosses_replicas(replicas: tuple[RedisState, RedisState]) -> None:
    """A message published by one replica reaches a subscriber on the other."""
    a, b = replicas
    async with b.subscribe("events") as messages:
        await a.publish("events", b"hello")
        assert await asyncio.wait_for(anext(messages), 2.0) == b"hello"


async def test_keys_carry_the_prefix(redis_url: str, prefix: str, raw: aioredis.Redis) -> None:
    """Every key lives under the configured prefix; other prefixes do not see it."""
    state = RedisState(redis_url, prefix=prefix)
    other = RedisState(redis_url, prefix=random_prefix())
    try:
        await state.set("k", b"v")
        assert await raw.get(prefix + "k") == b"v"
        assert await other.get("k") is None
    finally:
        await state.close()
        await other.close()


async def test_ttl_has_millisecond_precision(
    redis_url: str, prefix: str, raw: aioredis.Redis
) -> None:
    """A 0.25 s TTL is stored as 250 ms, not rounded to whole seconds."""
    state = RedisState(redis_url, prefix=prefix)
    try:
        await state.set("k", b"v", ttl_s=0.25)
        await state.incr("c", ttl_s=0.25)
        for key in ("k", "c"):
            assert 150 < await raw.pttl(prefix + key) <= 250
    finally:
        await state.close()


async def test_idle_bucket_expires_when_full(
    redis_url: str, prefix: str, raw: aioredis.Redis
) -> None:
    """A bucket key expires about when it would be full again, so idle buckets vanish."""
    state = RedisState(redis_url, prefix=prefix)
    try:
        await state.take("b", 10.0, 5, cost=5)  # empty: full again in 0.5 s
        ttl_ms = await raw.pttl(prefix + "b")
        assert 1000 < ttl_ms <= 1500
    finally:
        await state.close()


async def test_ping_answers(redis_url: str, prefix: str) -> None:
    """ping is True against a live server."""
    state = RedisState(redis_url, prefix=prefix)
    try:
        assert await state.ping() is True
    finally:
        await state.close()


async def test_password_never_appears_in_errors_or_repr() -> None:
    """A URL's password is absent from repr and from the error of a failed connection."""
    secret = "s3cret-pa55word"
    state = RedisState(
        f"redis://:{secret}@127.0.0.1:{free_port()}/0", prefix="p:", connect_timeout_s=0.5
    )
    try:
        assert secret not in repr(state)
        with pytest.raises(RedisError) as caught:
            await state.ping()
        assert secret not in str(caught.value)
        assert secret not in repr(caught.value)
    finally:
        await state.close()


async def test_close_is_idempotent(redis_url: str, prefix: str) -> None:
    """close can be called twice."""
    state = RedisState(redis_url, prefix=prefix)
    await state.set("k", b"v")
    assert await state.get("k") == b"v"
    await state.close()
    await state.close()
