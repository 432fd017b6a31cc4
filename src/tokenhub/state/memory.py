"""In-memory shared state for one process (the embedded default).

Every method runs without an await point between read and write, so each is atomic
on the event loop. Expired keys are dropped lazily when touched, and a sweep at most
once per ``SWEEP_EVERY_S`` of clock time drops expired keys and idle (full) token
buckets that nobody touches again, so per-IP or per-window keys cannot pile up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tokenhub.types import Clock, monotonic

SUBSCRIBER_QUEUE = 1024
SWEEP_EVERY_S = 30.0
# Float refill arithmetic can leave a bucket at 0.9999999 after waiting exactly the
# advertised retry-after; this slack makes that wait enough, as promised.
TOKEN_EPSILON = 1e-9


class MemoryState:
    """``SharedState`` in this process's memory; time from an injectable clock.

    ``take`` with ``cost > burst`` (or ``rate <= 0`` and too few tokens) can never
    succeed and returns ``inf``; callers that turn the answer into a Retry-After clamp
    the cost first. ``get`` of a counter returns its decimal bytes, as Redis does.
    """

    def __init__(self, *, clock: Clock = monotonic) -> None:
        self._clock = clock
        self._values: dict[str, Any] = {}
        self._expiry: dict[str, float] = {}
        # key -> (tokens, last refill, time at which the bucket is full again)
        self._buckets: dict[str, tuple[float, float, float]] = {}
        self._subscribers: dict[str, set[asyncio.Queue[bytes]]] = {}
        self._next_sweep = clock() + SWEEP_EVERY_S

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
        self._maybe_sweep()

    def _maybe_sweep(self) -> None:
        now = self._clock()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY_S
        for key in [k for k, deadline in self._expiry.items() if now >= deadline]:
            self._values.pop(key, None)
            del self._expiry[key]
        # A full bucket is indistinguishable from an absent one, so dropping it is free.
        for key in [k for k, b in self._buckets.items() if now >= b[2]]:
            del self._buckets[key]

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
        tokens, last, _ = self._buckets.get(key, (burst, now, now))
        tokens = min(burst, tokens + max(0.0, now - last) * rate)
        wait = 0.0
        if tokens + TOKEN_EPSILON >= cost:
            tokens -= cost
        else:
            wait = _wait(tokens, rate, burst, cost)
        full_at = now + (burst - tokens) / rate if rate > 0 else float("inf")
        self._buckets[key] = (tokens, now, full_at)
        self._maybe_sweep()
        return wait

    async def get(self, key: str) -> bytes | None:
        value = self._live(key)
        if isinstance(value, int):
            return str(value).encode()
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        self._put(key, value, ttl_s, keep_ttl=False)

    async def set_nx(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        if self._live(key) is not None:
            return False
        self._put(key, value, ttl_s, keep_ttl=False)
        return True

    async def delete(self, key: str) -> None:
        # One key namespace, as in Redis: deleting a bucket's key resets the bucket.
        self._values.pop(key, None)
        self._expiry.pop(key, None)
        self._buckets.pop(key, None)

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


def _wait(tokens: float, rate: float, burst: float, cost: float) -> float:
    """Seconds until ``cost`` tokens are available; ``inf`` when that never happens."""
    if rate <= 0 or cost > burst:
        return float("inf")
    return (cost - tokens) / rate


async def _drain(queue: asyncio.Queue[bytes]) -> AsyncIterator[bytes]:
    while True:
        yield await queue.get()
