"""In-memory shared state for one process (the embedded default).

Every method runs without an await point between read and write, so each is atomic
on the event loop. Expired keys are dropped lazily when touched.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tokenhub.types import Clock, monotonic

SUBSCRIBER_QUEUE = 1024


class MemoryState:
    """``SharedState`` in this process's memory; time from an injectable clock."""

    def __init__(self, *, clock: Clock = monotonic) -> None:
        self._clock = clock
        self._values: dict[str, Any] = {}
        self._expiry: dict[str, float] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)
        self._subscribers: dict[str, set[asyncio.Queue[bytes]]] = {}

    def _live(self, key: str) -> Any:
        deadline = self._expiry.get(key)
        if deadline is not None and self._clock() >= deadline:
            self._values.pop(key, None)
            self._expiry.pop(key, None)
        return self._values.get(key)

    def _put(self, key: str, value: Any, ttl_s: float | None, *, keep_ttl: bool) -> None:
        if not (keep_ttl and key in self._values):
            if ttl_s is None:
                self._expiry.pop(key, None)
            else:
                self._expiry[key] = self._clock() + ttl_s
        self._values[key] = value

    async def incr(self, key: str, amount: int = 1, ttl_s: float | None = None) -> int:
        value = int(self._live(key) or 0) + amount
        self._put(key, value, ttl_s, keep_ttl=True)
        return value

    async def get_int(self, key: str) -> int:
        return int(self._live(key) or 0)

    async def reserve(self, key: str, amount: int, limit: int, ttl_s: float | None = None) -> bool:
        current = int(self._live(key) or 0)
        if current + amount > limit:
            return False
        self._put(key, current + amount, ttl_s, keep_ttl=True)
        return True

    async def take(self, key: str, rate: float, burst: float, cost: float = 1.0) -> float:
        now = self._clock()
        tokens, last = self._buckets.get(key, (burst, now))
        tokens = min(burst, tokens + (now - last) * rate)
        if tokens >= cost:
            self._buckets[key] = (tokens - cost, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (cost - tokens) / rate if rate > 0 else float("inf")

    async def get(self, key: str) -> bytes | None:
        value = self._live(key)
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        self._put(key, value, ttl_s, keep_ttl=False)

    async def set_nx(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        if self._live(key) is not None:
            return False
        self._put(key, value, ttl_s, keep_ttl=False)
        return True

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)
        self._expiry.pop(key, None)

    async def publish(self, channel: str, message: bytes) -> None:
        for queue in self._subscribers.get(channel, ()):
            if queue.full():  # a slow reader loses its oldest message, never blocks us
                queue.get_nowait()
            queue.put_nowait(message)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self._subscribers.setdefault(channel, set()).add(queue)
        try:
            yield _drain(queue)
        finally:
            subs = self._subscribers.get(channel)
            if subs is not None:
                subs.discard(queue)
                if not subs:
                    del self._subscribers[channel]

    async def close(self) -> None:
        self._subscribers.clear()


async def _drain(queue: asyncio.Queue[bytes]) -> AsyncIterator[bytes]:
    while True:
        yield await queue.get()
