"""The SharedState contract, run against MemoryState and RedisState alike."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import pytest

from tests.integration.state.conftest import Backend

TTL = 0.2  # short enough to keep Redis tests fast, long enough to outlive a round trip


async def next_message(messages: AsyncIterator[bytes]) -> bytes:
    return await asyncio.wait_for(anext(messages), 2.0)


async def test_incr_adds_and_returns_new_value(backend: Backend) -> None:
    """incr adds positive and negative amounts and returns the running total."""
    s = backend.state
    assert await s.incr("c") == 1
    assert await s.incr("c", 5) == 6
    assert await s.incr("c", -2) == 4
    assert await s.get_int("c") == 4


async def test_get_int_of_absent_key_is_zero(backend: Backend) -> None:
    """get_int of a key never written is 0."""
    assert await backend.state.get_int("nothing") == 0


async def test_incr_ttl_is_set_on_create_only(backend: Backend) -> None:
    """incr's TTL starts when the key is created and later adds do not extend it."""
    s = backend.state
    await s.incr("w", 1, ttl_s=TTL)
    await backend.advance(TTL * 0.4)
    assert await s.incr("w", 1, ttl_s=TTL) == 2
    await backend.advance(TTL * 0.8)
    assert await s.get_int("w") == 0
    assert await s.incr("w", 1, ttl_s=TTL) == 1  # a fresh window


async def test_get_of_counter_is_decimal_bytes(backend: Backend) -> None:
    """get of a counter returns its value as decimal bytes."""
    await backend.state.incr("c", 42)
    assert await backend.state.get("c") == b"42"


async def test_reserve_adds_only_within_limit(backend: Backend) -> None:
    """reserve adds while the total stays <= limit and refuses without adding beyond it."""
    s = backend.state
    assert await s.reserve("r", 3, 5)
    assert await s.reserve("r", 2, 5)
    assert not await s.reserve("r", 1, 5)
    assert await s.get_int("r") == 5
    assert await s.reserve("r", -2, 5)  # a negative amount releases
    assert await s.get_int("r") == 3


async def test_refused_reserve_does_not_create_key(backend: Backend) -> None:
    """A reserve larger than the limit leaves an absent key absent."""
    assert not await backend.state.reserve("r", 10, 5, ttl_s=TTL)
    assert await backend.state.get("r") is None


async def test_reserve_ttl_expires_the_window(backend: Backend) -> None:
    """reserve's TTL, set on create, frees the whole amount when it expires."""
    s = backend.state
    assert await s.reserve("r", 5, 5, ttl_s=TTL)
    assert not await s.reserve("r", 1, 5, ttl_s=TTL)
    await backend.advance(TTL * 1.5)
    assert await s.reserve("r", 5, 5, ttl_s=TTL)


async def test_reserve_never_exceeds_limit_under_concurrency(backend: Backend) -> None:
    """200 concurrent reserves of 1 against a limit of 50 admit exactly 50."""
    s = backend.state
    results = await asyncio.gather(*(s.reserve("conc", 1, 50) for _ in range(200)))
    assert sum(results) == 50
    assert await s.get_int("conc") == 50


async def test_take_allows_burst_then_reports_wait(backend: Backend) -> None:
    """take admits ``burst`` requests at once, then returns the wait for one token."""
    s = backend.state
    assert await s.take("b", 1.0, 3) == 0.0
    assert await s.take("b", 1.0, 3) == 0.0
    assert await s.take("b", 1.0, 3) == 0.0
    wait = await s.take("b", 1.0, 3)
    assert 0.9 < wait <= 1.0 + 1e-6


async def test_take_refills_at_rate(backend: Backend) -> None:
    """After waiting the advertised time the next take is admitted."""
    s = backend.state
    assert await s.take("b", 5.0, 1) == 0.0
    wait = await s.take("b", 5.0, 1)
    assert 0 < wait <= 0.2 + 1e-6
    await backend.advance(wait + 0.02)
    assert await s.take("b", 5.0, 1) == 0.0


async def test_take_never_refills_beyond_burst(backend: Backend) -> None:
    """A long idle bucket holds at most ``burst`` tokens."""
    s = backend.state
    assert await s.take("b", 10.0, 2) == 0.0
    await backend.advance(0.3)  # would be 4 tokens without the cap
    assert await s.take("b", 10.0, 2, cost=2) == 0.0
    assert await s.take("b", 10.0, 2) > 0


async def test_take_with_cost_charges_that_many_tokens(backend: Backend) -> None:
    """A cost of N takes N tokens; a refused take takes none."""
    s = backend.state
    assert await s.take("b", 1.0, 10, cost=7) == 0.0
    wait = await s.take("b", 1.0, 10, cost=5)
    assert 1.9 < wait <= 2.0 + 1e-6
    assert await s.take("b", 1.0, 10, cost=3) == 0.0


async def test_take_that_can_never_pass_returns_inf(backend: Backend) -> None:
    """A cost above burst, or no refill at all, is answered with an infinite wait."""
    s = backend.state
    assert math.isinf(await s.take("big", 10.0, 5, cost=6))
    assert await s.take("frozen", 0.0, 1) == 0.0
    assert math.isinf(await s.take("frozen", 0.0, 1))


async def test_buckets_are_independent(backend: Backend) -> None:
    """Draining one bucket leaves another untouched."""
    s = backend.state
    assert await s.take("a", 1.0, 1) == 0.0
    assert await s.take("a", 1.0, 1) > 0
    assert await s.take("b", 1.0, 1) == 0.0


async def test_delete_resets_a_bucket(backend: Backend) -> None:
    """Deleting a bucket's key makes it full again."""
    s = backend.state
    assert await s.take("a", 1.0, 1) == 0.0
    await s.delete("a")
    assert await s.take("a", 1.0, 1) == 0.0


async def test_set_get_delete_roundtrip(backend: Backend) -> None:
    """set stores bytes, get returns them, delete removes them."""
    s = backend.state
    assert await s.get("k") is None
    await s.set("k", b"\x00value\xff")
    assert await s.get("k") == b"\x00value\xff"
    await s.delete("k")
    assert await s.get("k") is None
    await s.delete("k")  # deleting an absent key is fine


async def test_set_ttl_expires(backend: Backend) -> None:
    """A value set with a TTL is gone after it."""
    s = backend.state
    await s.set("k", b"v", ttl_s=TTL)
    assert await s.get("k") == b"v"
    await backend.advance(TTL * 1.5)
    assert await s.get("k") is None


async def test_set_without_ttl_clears_previous_ttl(backend: Backend) -> None:
    """Overwriting with set and no TTL makes the value permanent."""
    s = backend.state
    await s.set("k", b"v1", ttl_s=TTL)
    await s.set("k", b"v2")
    await backend.advance(TTL * 1.5)
    assert await s.get("k") == b"v2"


async def test_set_nx_only_sets_absent_keys(backend: Backend) -> None:
    """set_nx sets once, refuses while the key lives, and succeeds again after expiry."""
    s = backend.state
    assert await s.set_nx("idem", b"first", ttl_s=TTL)
    assert not await s.set_nx("idem", b"second", ttl_s=TTL)
    assert await s.get("idem") == b"first"
    await backend.advance(TTL * 1.5)
    assert await s.set_nx("idem", b"third")
    assert await s.get("idem") == b"third"


async def test_set_nx_is_exclusive_under_concurrency(backend: Backend) -> None:
    """Of 100 concurrent set_nx calls on one key exactly one wins."""
    s = backend.state
    results = await asyncio.gather(*(s.set_nx("once", b"%d" % i) for i in range(100)))
    assert sum(results) == 1


async def test_pubsub_delivers_to_two_subscribers_in_order(backend: Backend) -> None:
    """Both subscribers receive every message published after subscribing, in order."""
    s = backend.state
    sent = [b"m%d" % i for i in range(5)]
    async with s.subscribe("events") as first, s.subscribe("events") as second:
        for message in sent:
            await s.publish("events", message)
        assert [await next_message(first) for _ in sent] == sent
        assert [await next_message(second) for _ in sent] == sent


async def test_pubsub_channels_are_separate(backend: Backend) -> None:
    """A subscriber sees only its own channel's messages."""
    s = backend.state
    async with s.subscribe("a") as messages:
        await s.publish("b", b"other")
        await s.publish("a", b"mine")
        assert await next_message(messages) == b"mine"


async def test_publish_without_subscribers_is_fine(backend: Backend) -> None:
    """Publishing to a channel nobody listens on neither fails nor blocks."""
    await backend.state.publish("nobody", b"x")
    assert await backend.subscribers("nobody") == 0


async def test_subscription_ends_on_exit(backend: Backend) -> None:
    """Leaving the context unsubscribes; a new subscriber still works."""
    s = backend.state
    async with s.subscribe("ch"):
        assert await backend.subscribers("ch") == 1
    assert await _eventually_zero(backend, "ch")
    async with s.subscribe("ch") as messages:
        await s.publish("ch", b"again")
        assert await next_message(messages) == b"again"


async def test_cancelled_reader_unsubscribes(backend: Backend) -> None:
    """A task cancelled while waiting for messages leaves no subscription behind."""
    s = backend.state
    started = asyncio.Event()

    async def reader() -> None:
        async with s.subscribe("ch") as messages:
            started.set()
            async for _ in messages:
                pass

    task = asyncio.create_task(reader())
    await asyncio.wait_for(started.wait(), 2.0)
    assert await backend.subscribers("ch") == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _eventually_zero(backend, "ch")


async def _eventually_zero(backend: Backend, channel: str) -> bool:
    """Redis drops a subscription when its connection closes, a moment later."""
    for _ in range(50):
        if await backend.subscribers(channel) == 0:
            return True
        await asyncio.sleep(0.01)
    return False
