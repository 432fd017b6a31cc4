"""The shared-state port: counters, reservations, token buckets, kv with TTL, pub/sub.

One process keeps this state in memory (``MemoryState``); replicas share it through
Redis (``RedisState``) so that limits, budgets, idempotency entries and the event bus
hold across them. Switching is configuration only. Every operation is atomic in each
implementation: two replicas racing on ``reserve`` can never both pass a limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol


class SharedState(Protocol):
    """Small atomic primitives that the security and observability layers build on."""

    async def incr(self, key: str, amount: int = 1, ttl_s: float | None = None) -> int:
        """Add ``amount`` (may be negative) and return the new value. ``ttl_s`` sets the
        key's expiry when the key is created (a fixed window), not on every add."""
        ...

    async def get_int(self, key: str) -> int:
        """The counter's value, 0 when absent or expired."""
        ...

    async def reserve(self, key: str, amount: int, limit: int, ttl_s: float | None = None) -> bool:
        """Atomically add ``amount`` only if the result stays <= ``limit``; True if added."""
        ...

    async def take(self, key: str, rate: float, burst: float, cost: float = 1.0) -> float:
        """Token bucket (``rate`` tokens/s, capacity ``burst``): take ``cost`` tokens.
        Returns 0.0 when allowed, else the seconds until enough tokens are back."""
        ...

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None: ...

    async def set_nx(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        """Set only if absent; True when this call set it."""
        ...

    async def delete(self, key: str) -> None: ...

    async def publish(self, channel: str, message: bytes) -> None: ...

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """``async with state.subscribe(ch) as messages: async for m in messages: ...``
        Messages published after the subscription starts are delivered, in order."""
        ...

    async def close(self) -> None: ...
