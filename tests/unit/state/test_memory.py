"""MemoryState specifics: the sweep of forgotten keys and buckets, time from the clock."""

from __future__ import annotations

from tokenhub.state.memory import SWEEP_EVERY_S, MemoryState


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_sweep_drops_expired_keys_never_touched_again() -> None:
    """Expired per-window keys are removed by the periodic sweep, not kept forever."""
    clock = FakeClock()
    state = MemoryState(clock=clock)
    for i in range(100):
        await state.incr(f"window:{i}", ttl_s=1.0)
    await state.set("kept", b"v")
    clock.now += SWEEP_EVERY_S + 1
    await state.incr("trigger")
    assert set(state._values) == {"kept", "trigger"}
    assert state._expiry == {}


async def test_sweep_drops_idle_full_buckets_only() -> None:
    """Buckets that have refilled are dropped; a bucket still refilling is kept."""
    clock = FakeClock()
    state = MemoryState(clock=clock)
    for i in range(50):
        await state.take(f"ip:{i}", 1.0, 2)
    await state.take("slow", 0.001, 1)  # needs 1000 s to refill
    clock.now += SWEEP_EVERY_S + 1
    await state.take("trigger", 1.0, 2)
    assert set(state._buckets) == {"slow", "trigger"}
    assert await state.take("slow", 0.001, 1) > 0  # its state survived the sweep


async def test_waiting_exactly_the_advertised_time_is_enough() -> None:
    """Float rounding never refuses a caller that waited exactly the returned seconds."""
    clock = FakeClock()
    state = MemoryState(clock=clock)
    for _ in range(3):
        await state.take("b", 3.0, 1, cost=0.7)
        wait = await state.take("b", 3.0, 1, cost=0.7)
        assert wait > 0
        clock.now += wait
        assert await state.take("b", 3.0, 1, cost=0.7) == 0.0


async def test_close_drops_subscribers() -> None:
    """close forgets every subscriber queue."""
    state = MemoryState()
    async with state.subscribe("ch"):
        await state.close()
        assert state._subscribers == {}
        await state.publish("ch", b"x")  # publishing after close is harmless
