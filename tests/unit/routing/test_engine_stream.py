"""RoutingEngine.open_stream: failover before the first chunk, relay, close, health."""

from __future__ import annotations

import pytest

from tests.unit.routing.fakes import Rig, chat, err, make_rig
from tokenhub.errors import ProviderError, UpstreamFailed
from tokenhub.types import Chunk, ErrorClass, ModelConfig

A = ModelConfig("a1", "pa", input_per_1k=0.0001)
B = ModelConfig("b1", "pb", input_per_1k=0.0002)


@pytest.fixture
async def rig() -> Rig:
    return await make_rig([A, B])


async def collect(rig: Rig) -> tuple[list[Chunk], str]:
    stream, decision = await rig.engine.open_stream(chat(stream=True), rig.engine.policy("cheap"))
    return [c async for c in stream], decision.reason


async def test_stream_relays_every_chunk_and_records_success(rig: Rig) -> None:
    """All upstream chunks come through and the provider is credited once the stream ends."""
    rig.adapter("pa").stream_script["a1"] = [
        [Chunk(role="assistant"), Chunk(text="hi"), Chunk(finish_reason="stop")]
    ]
    chunks, reason = await collect(rig)
    assert [c.text for c in chunks] == [None, "hi", None] and reason == "routed-weight-5"
    h = rig.health.state("pa")
    assert (h.requests, h.errors, h.latency_ema_ms) == (1, 0, 0.0)
    assert rig.adapter("pa").streams_closed == 1


async def test_no_health_success_until_the_stream_ends(rig: Rig) -> None:
    """Opening the stream alone records nothing; the outcome is known at its end."""
    stream, _ = await rig.engine.open_stream(chat(), rig.engine.policy("cheap"))
    assert rig.health.state("pa").requests == 0
    async for _ in stream:
        pass
    assert rig.health.state("pa").requests == 1


async def test_failover_before_the_first_chunk(rig: Rig) -> None:
    """An error before the first chunk fails over to the next model's stream."""
    rig.adapter("pa").stream_script["a1"] = [err(ErrorClass.FATAL, 500)]
    stream, d = await rig.engine.open_stream(chat(), rig.engine.policy("cheap"))
    assert d.model is B and d.reason == "failover-fatal"
    assert [c.text async for c in stream] == ["ok", None]
    assert rig.adapter("pa").streams_closed == 1, "the failed upstream stream is closed"
    assert rig.health.state("pa").errors == 1 and rig.health.state("pb").requests == 1


async def test_transient_before_first_chunk_is_retried(rig: Rig) -> None:
    """A transient error before the first chunk retries the same model after 100 ms."""
    rig.adapter("pa").stream_script["a1"] = [err(ErrorClass.TRANSIENT, 503)]
    chunks, reason = await collect(rig)
    assert reason == "retried-transient" and rig.sleep.delays == [0.1]
    assert rig.adapter("pa").calls == ["a1", "a1"] and [c.text for c in chunks] == ["ok", None]


async def test_mid_stream_error_propagates(rig: Rig) -> None:
    """After the first chunk there is no failover: the error reaches the consumer."""
    boom = err(ErrorClass.TRANSIENT, 502)
    rig.adapter("pa").stream_script["a1"] = [[Chunk(text="partial"), boom]]
    stream, d = await rig.engine.open_stream(chat(), rig.engine.policy("cheap"))
    seen = []
    with pytest.raises(ProviderError) as info:
        async for c in stream:
            seen.append(c.text)
    assert info.value is boom and seen == ["partial"] and d.model is A
    assert rig.adapter("pb").calls == []
    h = rig.health.state("pa")
    assert h.errors == 1 and h.last_error_class == "transient"


async def test_early_close_closes_the_upstream(rig: Rig) -> None:
    """Closing the relay early (client gone) closes the upstream iterator."""
    rig.adapter("pa").stream_script["a1"] = [
        [Chunk(text="one"), Chunk(text="two"), Chunk(text="three")]
    ]
    stream, _ = await rig.engine.open_stream(chat(), rig.engine.policy("cheap"))
    assert (await anext(stream)).text == "one"
    assert rig.adapter("pa").streams_closed == 0
    await stream.aclose()  # type: ignore[attr-defined]
    assert rig.adapter("pa").streams_closed == 1
    assert rig.health.state("pa").errors == 0


async def test_empty_stream_is_a_success(rig: Rig) -> None:
    """An upstream stream that ends before any chunk yields nothing and is no error."""
    rig.adapter("pa").stream_script["a1"] = [[]]
    chunks, _ = await collect(rig)
    assert chunks == [] and rig.health.state("pa").errors == 0


async def test_every_stream_fails(rig: Rig) -> None:
    """If no model opens a stream, UpstreamFailed lists the attempts."""
    rig.adapter("pa").stream_script["a1"] = [err(ErrorClass.FATAL)]
    rig.adapter("pb").stream_script["b1"] = [err(ErrorClass.FATAL)]
    with pytest.raises(UpstreamFailed) as info:
        await rig.engine.open_stream(chat(), rig.engine.policy("cheap"))
    assert [a["model"] for a in info.value.details["attempts"]] == ["a1", "b1"]  # type: ignore[index]
