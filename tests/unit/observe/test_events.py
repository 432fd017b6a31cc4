"""EventBus and EventSink: SSE framing, fan-out, bounded queues, heartbeats, health events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from tests.unit.routing.fakes import FakeClock
from tokenhub.observe.events import (
    CONNECTED,
    HEARTBEAT,
    EventBus,
    EventSink,
    health_listener,
)
from tokenhub.observe.health import HealthTracker
from tokenhub.state.memory import MemoryState
from tokenhub.types import Attempt, Decision, ErrorClass, Outcome, Usage


@pytest.fixture
def state() -> MemoryState:
    return MemoryState()


def make_bus(state: MemoryState, **kw: Any) -> EventBus:
    return EventBus(state, wall=lambda: 1_700_000_000.0, **kw)


async def settle() -> None:
    """Let scheduled publishes and subscriber pumps run."""
    for _ in range(5):
        await asyncio.sleep(0)


async def subscribe(bus: EventBus, **kw: Any) -> AsyncIterator[bytes]:
    stream = bus.stream(**kw)
    assert await anext(stream) == CONNECTED  # subscribed from here on
    return stream


def parse(frame: bytes) -> tuple[str, dict[str, Any]]:
    head, data = frame.decode().strip().split("\n")
    assert head.startswith("event: ") and data.startswith("data: ")
    return head[len("event: ") :], orjson.loads(data[len("data: ") :])


async def next_event(stream: AsyncIterator[bytes]) -> tuple[str, dict[str, Any]]:
    async with asyncio.timeout(2):
        return parse(await anext(stream))


async def test_published_event_arrives_as_an_sse_frame(state: MemoryState) -> None:
    """A published event becomes `event: <type>` plus one JSON data line with ts and type."""
    bus = make_bus(state)
    stream = await subscribe(bus)
    bus.publish("route_success", model="m1", provider="p1", latency_ms=12.5)
    kind, data = await next_event(stream)
    assert kind == "route_success"
    assert data == {
        "type": "route_success",
        "ts": 1_700_000_000.0,
        "model": "m1",
        "provider": "p1",
        "latency_ms": 12.5,
    }
    await stream.aclose()  # type: ignore[attr-defined]


async def test_every_subscriber_gets_every_event(state: MemoryState) -> None:
    """Two subscribers at once each receive all events, in order."""
    bus = make_bus(state)
    a, b = await subscribe(bus), await subscribe(bus)
    assert bus.subscribers == 2
    for i in range(3):
        bus.publish("failover", seq=i)
    for stream in (a, b):
        got = [(await next_event(stream))[1]["seq"] for _ in range(3)]
        assert got == [0, 1, 2]
    await a.aclose()  # type: ignore[attr-defined]
    await b.aclose()  # type: ignore[attr-defined]
    assert bus.subscribers == 0


async def test_slow_reader_loses_its_oldest_events_only(state: MemoryState) -> None:
    """A reader that falls behind keeps the newest events its queue holds; others get all."""
    bus = make_bus(state, subscriber_queue=3)
    slow, fast = await subscribe(bus), await subscribe(bus)
    bus.publish("route_success", seq=0)
    assert (await next_event(fast))[1]["seq"] == 0  # fast keeps up; slow reads nothing
    for i in range(1, 10):
        bus.publish("route_success", seq=i)
        await settle()
        assert (await next_event(fast))[1]["seq"] == i
    slow_seqs = [(await next_event(slow))[1]["seq"] for _ in range(3)]
    assert slow_seqs == [7, 8, 9]
    await slow.aclose()  # type: ignore[attr-defined]
    await fast.aclose()  # type: ignore[attr-defined]


async def test_publish_never_waits_for_readers(state: MemoryState) -> None:
    """Publishing thousands of events with an unread subscriber returns at once."""
    bus = make_bus(state, subscriber_queue=4)
    stream = await subscribe(bus)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(2000):
        bus.publish("route_success", seq=i)
        if i % 500 == 0:
            await settle()
    await settle()
    assert loop.time() - start < 1.0
    kind, data = await next_event(stream)
    assert kind == "route_success" and data["seq"] >= 1996
    await stream.aclose()  # type: ignore[attr-defined]


async def test_idle_stream_sends_heartbeat_comments(state: MemoryState) -> None:
    """With nothing to send, the stream yields `: heartbeat` comments."""
    bus = make_bus(state, heartbeat_s=0.05)
    stream = await subscribe(bus)
    async with asyncio.timeout(2):
        assert await anext(stream) == HEARTBEAT
        assert await anext(stream) == HEARTBEAT
    await stream.aclose()  # type: ignore[attr-defined]


async def test_type_filter_keeps_only_the_named_events(state: MemoryState) -> None:
    """A stream opened with `types` skips every other event type."""
    bus = make_bus(state)
    stream = await subscribe(bus, types={"failover"})
    bus.publish("route_success", seq=1)
    bus.publish("failover", seq=2)
    assert await next_event(stream) == ("failover", {"type": "failover", "ts": 1.7e9, "seq": 2})
    await stream.aclose()  # type: ignore[attr-defined]


async def test_events_from_another_replica_arrive_through_the_shared_state(
    state: MemoryState,
) -> None:
    """The bus reads the shared channel, so events published elsewhere reach subscribers."""
    bus = make_bus(state, channel="ev")
    stream = await subscribe(bus)
    await state.publish("ev", orjson.dumps({"type": "vault", "ts": 1.0, "action": "unlocked"}))
    assert await next_event(stream) == ("vault", {"type": "vault", "ts": 1.0, "action": "unlocked"})
    await stream.aclose()  # type: ignore[attr-defined]


async def test_stop_ends_open_streams_and_later_publishes_are_ignored(state: MemoryState) -> None:
    """stop() finishes pending publishes, ends every stream, and is idempotent."""
    bus = make_bus(state, heartbeat_s=30)
    stream = await subscribe(bus)
    bus.publish("admin_change", what="provider p1 added")
    await bus.stop()
    assert (await next_event(stream))[0] == "admin_change"
    with pytest.raises(StopAsyncIteration):
        async with asyncio.timeout(2):
            await anext(stream)
    await bus.stop()
    bus.publish("route_success")
    assert bus.subscribers == 0


def test_publish_without_a_running_loop_is_dropped_quietly() -> None:
    """Publishing outside the event loop neither raises nor blocks."""
    bus = EventBus(MemoryState())
    bus.publish("route_success", model="m")
    assert bus.dropped == 1


async def test_health_listener_publishes_health_changes(state: MemoryState) -> None:
    """Tracker state changes become health_change events with old and new state."""
    bus = make_bus(state)
    tracker = HealthTracker(clock=FakeClock(), degraded_after=1, down_after=2)
    tracker.add_listener(health_listener(bus))
    stream = await subscribe(bus)
    tracker.record_failure("p1", ErrorClass.TRANSIENT, "boom")
    tracker.record_failure("p1", ErrorClass.TRANSIENT, "boom")
    tracker.record_failure("p1", ErrorClass.TRANSIENT, "boom")  # still down: no event
    tracker.record_success("p1", 10.0)
    changes = [await next_event(stream) for _ in range(3)]
    assert [(d["provider"], d["old_state"], d["new_state"]) for _, d in changes] == [
        ("p1", "healthy", "degraded"),
        ("p1", "degraded", "down"),
        ("p1", "down", "healthy"),
    ]
    assert {k for k, _ in changes} == {"health_change"}
    await stream.aclose()  # type: ignore[attr-defined]


def test_health_listener_errors_do_not_break_recording() -> None:
    """A listener that raises is logged; the tracker still records and calls the others."""
    tracker = HealthTracker(degraded_after=1)
    heard: list[tuple[str, str, str]] = []

    def broken(key: str, old: str, new: str) -> None:
        raise RuntimeError("listener bug")

    tracker.add_listener(broken)
    tracker.add_listener(lambda *change: heard.append(change))
    tracker.record_failure("p", ErrorClass.FATAL, "x")
    assert tracker.state("p").state == "degraded"
    assert heard == [("p", "healthy", "degraded")]
    tracker.remove_listener(broken)
    tracker.remove_listener(broken)  # absent: no error
    tracker.record_success("p", 1.0)
    assert heard[-1] == ("p", "degraded", "healthy")


def outcome(**kw: Any) -> Outcome:
    base: dict[str, Any] = {
        "request_id": "req-1",
        "surface": "openai",
        "started_at": 1.0,
        "status": 200,
        "latency_ms": 42.04,
        "model": "m2",
        "provider": "p2",
        "usage": Usage(10, 5),
        "cost_usd": 0.001,
        "reason": "cheapest",
    }
    base.update(kw)
    return Outcome(**base)


async def test_event_sink_sends_failovers_then_route_success(state: MemoryState) -> None:
    """One failover event per failed attempt, then route_success with cost and latency."""
    bus = make_bus(state)
    stream = await subscribe(bus)
    attempts = [
        Attempt("m1", "p1", ErrorClass.TRANSIENT, 503, "HTTP 503", 20.0),
        Attempt("m2", "p2", latency_ms=22.0),
    ]
    await EventSink(bus).write([outcome(decision=Decision(attempts=attempts))])
    kind, fo = await next_event(stream)
    assert kind == "failover"
    assert (fo["model"], fo["provider"], fo["error_class"], fo["status"]) == (
        "m1",
        "p1",
        "transient",
        503,
    )
    kind, ok = await next_event(stream)
    assert kind == "route_success"
    assert (ok["model"], ok["provider"], ok["latency_ms"], ok["cost_usd"]) == (
        "m2",
        "p2",
        42.0,
        0.001,
    )
    assert ok["reason"] == "cheapest" and ok["error_class"] is None
    await stream.aclose()  # type: ignore[attr-defined]


async def test_event_sink_reports_errors_as_route_error(state: MemoryState) -> None:
    """A failed request becomes route_error with its error class and message."""
    bus = make_bus(state)
    stream = await subscribe(bus)
    bad = outcome(
        status=502, model=None, provider=None, error_class="transient", error="all failed"
    )
    await EventSink(bus).write([bad])
    kind, data = await next_event(stream)
    assert kind == "route_error"
    assert (data["status"], data["error_class"], data["error"]) == (502, "transient", "all failed")
    await stream.aclose()  # type: ignore[attr-defined]


class CountingState(MemoryState):
    """A MemoryState that counts publishes."""

    def __init__(self) -> None:
        super().__init__()
        self.published = 0

    async def publish(self, channel: str, message: bytes) -> None:
        self.published += 1
        await super().publish(channel, message)


async def test_event_sink_skips_work_when_a_local_state_has_no_subscriber() -> None:
    """With a process-local state and no open stream, a batch publishes nothing."""
    state = CountingState()
    bus = make_bus(state)
    assert bus.local_only and not bus.wanted
    await EventSink(bus).write([outcome(request_id=f"r{i}") for i in range(50)])
    assert state.published == 0
    stream = await subscribe(bus)
    assert bus.wanted
    await EventSink(bus).write([outcome(request_id="seen")])
    assert state.published == 1
    assert (await next_event(stream))[1]["request_id"] == "seen"
    await stream.aclose()  # type: ignore[attr-defined]
    assert not bus.wanted


async def test_event_sink_always_publishes_to_a_shared_state() -> None:
    """A bus that is not local-only (e.g. Redis) publishes even with no local stream."""
    state = CountingState()
    bus = make_bus(state, local_only=False)
    attempts = [Attempt("m1", "p1", ErrorClass.TRANSIENT, 503, "x", 1.0), Attempt("m2", "p2")]
    await EventSink(bus).write([outcome(decision=Decision(attempts=attempts)), outcome()])
    assert bus.wanted and state.published == 3  # one failover + two route_success
    await bus.stop()
    assert not bus.wanted
