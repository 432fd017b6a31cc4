"""The event bus: gateway events fanned out to Server-Sent Events subscribers.

Events travel as JSON (``{"type", "ts", ...}``) through the shared-state port's pub/sub,
so replicas can share one stream once the state lives in Redis. ``publish()`` (vault,
health, admin paths) is synchronous and never waits: the shared-state write is scheduled
as a task, and when too many writes are pending (a stalled Redis) new events are dropped
and counted. The recorder's ``EventSink`` instead awaits each write in turn
(``send()``), with no task per event.

When the state is process-local (``MemoryState``) the only possible listeners are this
bus's own streams, so with none open (``wanted`` is false) events are not even built.

Each SSE subscriber has its own bounded queue: a slow reader loses its oldest events
and never slows the gateway or the other readers. Idle streams get heartbeat comments
so proxies keep them open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import Any

import orjson

from tokenhub.state.base import SharedState
from tokenhub.state.memory import MemoryState
from tokenhub.types import Attempt, Outcome

log = logging.getLogger("tokenhub.events")

ROUTE_SUCCESS = "route_success"
ROUTE_ERROR = "route_error"
FAILOVER = "failover"
HEALTH_CHANGE = "health_change"
VAULT = "vault"
ADMIN_CHANGE = "admin_change"

CONNECTED = b": connected\n\n"
HEARTBEAT = b": heartbeat\n\n"
MAX_PENDING_PUBLISHES = 1024


class EventBus:
    """Publishes events to the shared state and streams them to SSE subscribers."""

    def __init__(
        self,
        state: SharedState,
        *,
        channel: str = "events",
        subscriber_queue: int = 256,
        heartbeat_s: float = 15.0,
        wall: Callable[[], float] = time.time,
        local_only: bool | None = None,
    ) -> None:
        if subscriber_queue < 1 or heartbeat_s <= 0:
            raise ValueError("need subscriber_queue >= 1 and heartbeat_s > 0")
        self._state = state
        self._channel = channel
        self._queue_size = subscriber_queue
        self._heartbeat_s = heartbeat_s
        self._wall = wall
        # None: decide from the state. Only a process-local state lets us know that
        # nobody anywhere listens.
        self.local_only = isinstance(state, MemoryState) if local_only is None else local_only
        self._pending: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()
        self._wakes: set[asyncio.Event] = set()
        self.dropped = 0  # events not published because too many writes were pending

    @property
    def subscribers(self) -> int:
        """How many streams are open now."""
        return len(self._wakes)

    @property
    def wanted(self) -> bool:
        """False when nobody can hear an event now (process-local state, no stream)."""
        return not (self.local_only and not self._wakes) and not self._closed.is_set()

    def message(self, type: str, **fields: Any) -> bytes:
        """One event as the JSON bytes that travel through the shared state."""
        return orjson.dumps({"type": type, "ts": self._wall(), **fields})

    async def send(self, message: bytes) -> None:
        """Write one ``message()`` to the shared state now (best effort, never raises)."""
        if not self._closed.is_set():
            await self._send(message)

    def publish(self, type: str, **fields: Any) -> None:
        """Send one event to every subscriber; never blocks (call from the event loop)."""
        if self._closed.is_set():
            return
        if len(self._pending) >= MAX_PENDING_PUBLISHES:
            self.dropped += 1
            return
        message = self.message(type, **fields)
        try:
            task = asyncio.get_running_loop().create_task(self._send(message))
        except RuntimeError:  # no running loop: nobody can be listening
            self.dropped += 1
            return
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send(self, message: bytes) -> None:
        try:
            await self._state.publish(self._channel, message)
        except Exception:
            # Events are best effort: a failing shared state must not surface anywhere.
            log.warning("event publish failed", exc_info=True)

    async def stream(self, types: Collection[str] | None = None) -> AsyncIterator[bytes]:
        """SSE bytes for one subscriber: a ``: connected`` comment once subscribed, then
        ``event: <type>`` frames (only ``types`` when given) and heartbeat comments.
        Ends when the bus stops or the shared state's subscription ends."""
        queue: deque[bytes] = deque(maxlen=self._queue_size)  # full: drops the oldest
        wake = asyncio.Event()
        async with self._state.subscribe(self._channel) as messages:
            pump = asyncio.create_task(_pump(messages, queue, wake))
            self._wakes.add(wake)
            try:
                yield CONNECTED
                while not (pump.done() or self._closed.is_set()):
                    if not await _wait(wake, self._heartbeat_s):
                        yield HEARTBEAT
                        continue
                    wake.clear()
                    while queue:
                        if frame := _frame(queue.popleft(), types):
                            yield frame
                while queue:  # what arrived before the end is still delivered
                    if frame := _frame(queue.popleft(), types):
                        yield frame
            finally:
                self._wakes.discard(wake)
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump

    async def stop(self) -> None:
        """Finish pending publishes and end every open stream (idempotent)."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await asyncio.sleep(0)  # let subscriber pumps take what was just published
        for wake in self._wakes:
            wake.set()


async def _pump(messages: AsyncIterator[bytes], queue: deque[bytes], wake: asyncio.Event) -> None:
    try:
        async for message in messages:
            queue.append(message)
            wake.set()
    finally:
        wake.set()  # lets the stream notice that the subscription ended


async def _wait(event: asyncio.Event, wait_s: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), wait_s)
    except TimeoutError:
        return False
    return True


def _frame(message: bytes, types: Collection[str] | None) -> bytes:
    try:
        kind = orjson.loads(message).get("type")
    except (orjson.JSONDecodeError, AttributeError):
        return b""
    if not isinstance(kind, str) or (types is not None and kind not in types):
        return b""
    # JSON from orjson holds no raw newline, so one data line carries the whole event.
    return b"event: " + kind.encode() + b"\ndata: " + message + b"\n\n"


def health_listener(bus: EventBus) -> Callable[[str, str, str], None]:
    """A ``HealthTracker`` listener publishing ``health_change`` events."""

    def listener(key: str, old: str, new: str) -> None:
        bus.publish(HEALTH_CHANGE, key=key, provider=key, old_state=old, new_state=new)

    return listener


class EventSink:
    """The recorder's sink: one ``failover`` event per failed attempt, then
    ``route_success`` or ``route_error`` for the request.

    Writes are awaited one after another (no task per event); when nobody can hear
    them (``EventBus.wanted`` is false) the batch is skipped without building events.
    """

    name = "events"

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    async def write(self, batch: Sequence[Outcome]) -> None:
        bus = self.bus
        for outcome in batch:
            if not bus.wanted:  # checked per outcome: the last stream may close mid-batch
                return
            if outcome.decision is not None:
                for message in self._failovers(outcome, outcome.decision.attempts):
                    await bus.send(message)
            await bus.send(self._final(outcome))

    def _failovers(self, o: Outcome, attempts: Sequence[Attempt]) -> list[bytes]:
        return [
            self.bus.message(
                FAILOVER,
                request_id=o.request_id,
                model=a.model,
                provider=a.provider,
                error_class=str(a.error_class),
                status=a.status,
                latency_ms=round(a.latency_ms, 1),
                reason=a.message,
            )
            for a in attempts
            if a.error_class is not None
        ]

    def _final(self, o: Outcome) -> bytes:
        ok = 200 <= o.status < 400
        return self.bus.message(
            ROUTE_SUCCESS if ok else ROUTE_ERROR,
            request_id=o.request_id,
            surface=o.surface,
            mode=o.mode,
            model=o.model,
            provider=o.provider,
            status=o.status,
            stream=o.stream,
            latency_ms=round(o.latency_ms, 1),
            ttft_ms=None if o.ttft_ms is None else round(o.ttft_ms, 1),
            cost_usd=o.cost_usd,
            input_tokens=o.usage.prompt_tokens,
            output_tokens=o.usage.completion_tokens,
            reason=o.reason,
            error_class=None if ok else o.error_class,
            error=None if ok else o.error,
        )
