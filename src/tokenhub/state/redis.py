"""Shared state in Redis, so that replicas agree on limits, budgets and events.

Each operation is one round trip: read-modify-write operations run as Lua scripts
(EVALSHA, reloaded by redis-py when the server forgot them), so two replicas racing on
``reserve`` or ``take`` can never both pass. Token buckets use the server's ``TIME``,
not the replica's clock, so replicas with skewed clocks still refill at one rate.

Every key and channel is namespaced with ``prefix``. The URL may carry a password; it
is never stored on this object beyond the connection pool, nor put in a message.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis

# Lua numbers passed to redis.call are formatted with 14 significant digits, which
# would round a microsecond timestamp; these scripts format floats themselves.

_INCR = """
local existed = redis.call('EXISTS', KEYS[1])
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if existed == 0 and ARGV[2] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""

_RESERVE = """
local raw = redis.call('GET', KEYS[1])
local amount = tonumber(ARGV[1])
if (tonumber(raw) or 0) + amount > tonumber(ARGV[2]) then
  return 0
end
redis.call('INCRBY', KEYS[1], amount)
if not raw and ARGV[3] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
"""

# Bucket hash {tokens, ts}. The key expires when the bucket would be full again: a
# full bucket and an absent one behave the same, so idle buckets clean themselves up.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local stored = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(stored[1]), tonumber(stored[2])
if tokens == nil or ts == nil then
  tokens, ts = burst, now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens + 1e-9 >= cost then
  tokens = tokens - cost
elseif rate <= 0 or cost > burst then
  wait = -1
else
  wait = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'ts', string.format('%.6f', now))
if rate > 0 then
  redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
end
return string.format('%.17g', wait)
"""


def _ms(ttl_s: float | None) -> str:
    """A TTL as whole milliseconds for a script ('' = none); never 0, which Redis rejects."""
    return "" if ttl_s is None else str(max(1, math.ceil(ttl_s * 1000)))


def _px(ttl_s: float | None) -> int | None:
    return None if ttl_s is None else max(1, math.ceil(ttl_s * 1000))


class RedisState:
    """``SharedState`` backed by Redis (redis-py asyncio), shared by every replica.

    ``max_connections`` bounds the pool; callers beyond it wait up to
    ``pool_timeout_s`` for a free connection instead of failing. Each open
    subscription holds one connection. Redis errors (``redis.exceptions.RedisError``)
    propagate unchanged; the caller decides whether to fail open or closed.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tokenhub:",
        max_connections: int = 64,
        pool_timeout_s: float = 5.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=pool_timeout_s,
            socket_connect_timeout=connect_timeout_s,
        )
        self._redis: aioredis.Redis = aioredis.Redis.from_pool(pool)
        self._prefix = prefix
        self._incr = self._redis.register_script(_INCR)
        self._reserve = self._redis.register_script(_RESERVE)
        self._take = self._redis.register_script(_TAKE)

    def __repr__(self) -> str:
        return f"RedisState(prefix={self._prefix!r})"  # never the URL: it may hold a password

    def _k(self, key: str) -> str:
        return self._prefix + key

    async def ping(self) -> bool:
        """True when the server answers; raises the redis error otherwise."""
        return bool(await self._redis.ping())

    async def incr(self, key: str, amount: int = 1, ttl_s: float | None = None) -> int:
        return int(await self._incr(keys=[self._k(key)], args=[amount, _ms(ttl_s)]))

    async def get_int(self, key: str) -> int:
        raw = await self._redis.get(self._k(key))
        return int(raw) if raw is not None else 0

    async def reserve(self, key: str, amount: int, limit: int, ttl_s: float | None = None) -> bool:
        args: list[int | str] = [amount, limit, _ms(ttl_s)]
        return bool(await self._reserve(keys=[self._k(key)], args=args))

    async def take(self, key: str, rate: float, burst: float, cost: float = 1.0) -> float:
        args = [repr(float(rate)), repr(float(burst)), repr(float(cost))]
        wait = float(await self._take(keys=[self._k(key)], args=args))
        return float("inf") if wait < 0 else wait

    async def get(self, key: str) -> bytes | None:
        value = await self._redis.get(self._k(key))
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        await self._redis.set(self._k(key), value, px=_px(ttl_s))

    async def set_nx(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        return bool(await self._redis.set(self._k(key), value, px=_px(ttl_s), nx=True))

    async def delete(self, key: str) -> None:
        await self._redis.delete(self._k(key))

    async def publish(self, channel: str, message: bytes) -> None:
        await self._redis.publish(self._k(channel), message)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        pubsub: Any = self._redis.pubsub()  # redis-py leaves PubSub untyped
        try:
            await pubsub.subscribe(self._k(channel))
            await _confirmed(pubsub)
            yield _messages(pubsub)
        finally:
            await pubsub.aclose()  # unsubscribes by dropping its connection's state

    async def close(self) -> None:
        await self._redis.aclose()


async def _confirmed(pubsub: Any) -> None:
    """Wait for the server's subscribe reply, so later publishes are never missed."""
    while True:
        msg = await pubsub.get_message(timeout=None)
        if msg is not None and msg["type"] == "subscribe":
            return


async def _messages(pubsub: Any) -> AsyncIterator[bytes]:
    async for msg in pubsub.listen():
        if msg["type"] == "message":
            yield msg["data"]
