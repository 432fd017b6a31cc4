"""Recorder: non-blocking record(), bounded queue, batching, drain on stop, sink isolation."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import pytest

from tokenhub.observe.recorder import BatchSink, Recorder
from tokenhub.types import Outcome


def outcome(i: int) -> Outcome:
    return Outcome(
        request_id=f"r{i}", surface="openai", started_at=1000.0 + i, status=200, latency_ms=5.0
    )


class ListSink:
    """Keeps every batch it is given."""

    def __init__(self, name: str = "list") -> None:
        self.name = name
        self.batches: list[list[str]] = []

    async def write(self, batch: Sequence[Outcome]) -> None:
        self.batches.append([o.request_id for o in batch])

    @property
    def ids(self) -> list[str]:
        return [i for b in self.batches for i in b]


class FailingSink:
    """Fails its first ``failures`` writes, then records like ListSink."""

    def __init__(self, failures: int, name: str = "flaky") -> None:
        self.name = name
        self.failures = failures
        self.calls = 0
        self.ids: list[str] = []

    async def write(self, batch: Sequence[Outcome]) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("disk on fire")
        self.ids.extend(o.request_id for o in batch)


class GateSink:
    """Blocks every write until ``gate`` is set."""

    def __init__(self) -> None:
        self.name = "gate"
        self.gate = asyncio.Event()
        self.ids: list[str] = []

    async def write(self, batch: Sequence[Outcome]) -> None:
        await self.gate.wait()
        self.ids.extend(o.request_id for o in batch)


def test_sinks_satisfy_the_protocol() -> None:
    """The test sinks (and so any class with name + async write) are BatchSinks."""
    assert isinstance(ListSink(), BatchSink)
    assert isinstance(FailingSink(0), BatchSink)


async def test_record_never_blocks_and_counts_drops_when_full() -> None:
    """With a stuck sink, record() returns at once; past max_queue outcomes are dropped."""
    sink = GateSink()
    rec = Recorder([sink], max_queue=10, batch_size=5, flush_interval_s=0.01)
    await rec.start()
    t0 = time.perf_counter()
    for i in range(100):
        rec.record(outcome(i))
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.05
    assert rec.queue_depth == 10
    assert rec.dropped == 90
    await asyncio.sleep(0.05)  # the writer takes one batch and blocks on the sink
    assert rec.queue_depth == 5
    sink.gate.set()
    await rec.stop()
    assert sink.ids == [f"r{i}" for i in range(10)]


async def test_stop_flushes_every_accepted_outcome() -> None:
    """Record N outcomes then stop(): the sink holds all N, in order, in full batches."""
    sink = ListSink()
    rec = Recorder([sink], batch_size=100, flush_interval_s=60)
    await rec.start()
    for i in range(1234):
        rec.record(outcome(i))
    await rec.stop()
    assert sink.ids == [f"r{i}" for i in range(1234)]
    assert all(len(b) <= 100 for b in sink.batches)
    assert rec.flushed == rec.accepted == 1234
    assert rec.queue_depth == 0 and rec.dropped == 0


async def test_stop_without_start_still_drains() -> None:
    """A recorder never started writes its queue on stop()."""
    sink = ListSink()
    rec = Recorder([sink])
    for i in range(3):
        rec.record(outcome(i))
    await rec.stop()
    assert sink.ids == ["r0", "r1", "r2"]


async def test_stop_is_idempotent_and_later_records_are_dropped() -> None:
    """A second stop() is a no-op; an outcome recorded after stop is counted as dropped."""
    sink = ListSink()
    rec = Recorder([sink])
    await rec.start()
    rec.record(outcome(1))
    await rec.stop()
    await rec.stop()
    rec.record(outcome(2))
    assert sink.ids == ["r1"]
    assert rec.dropped == 1


async def test_partial_batch_is_written_after_the_flush_interval() -> None:
    """Fewer than batch_size outcomes still reach the sink within flush_interval_s."""
    sink = ListSink()
    rec = Recorder([sink], batch_size=500, flush_interval_s=0.02)
    await rec.start()
    rec.record(outcome(1))
    rec.record(outcome(2))
    for _ in range(100):
        if sink.ids:
            break
        await asyncio.sleep(0.01)
    assert sink.batches == [["r1", "r2"]]
    await rec.stop()


async def test_full_batch_wakes_the_writer_early() -> None:
    """Reaching batch_size writes without waiting for a long flush interval."""
    sink = ListSink()
    rec = Recorder([sink], batch_size=3, flush_interval_s=60)
    await rec.start()
    for i in range(3):
        rec.record(outcome(i))
    await asyncio.sleep(0.02)
    assert sink.batches == [["r0", "r1", "r2"]]
    await rec.stop()


async def test_failing_sink_does_not_lose_other_sinks_rows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A sink that always fails is skipped per batch; the healthy sink gets everything."""
    good, bad = ListSink("good"), FailingSink(10**9, "bad")
    sleeps: list[float] = []

    async def no_sleep(s: float) -> None:
        sleeps.append(s)

    rec = Recorder([bad, good], batch_size=10, retries=2, retry_backoff_s=0.1, sleep=no_sleep)
    await rec.start()
    with caplog.at_level(logging.WARNING, "tokenhub.recorder"):
        for i in range(25):
            rec.record(outcome(i))
        await rec.stop()
    assert good.ids == [f"r{i}" for i in range(25)]
    assert bad.calls == 3 * 3  # three batches, each tried 1 + 2 retries
    assert rec.sink_failures == {"bad": 9, "good": 0}
    assert rec.lost == {"bad": 25, "good": 0}  # every outcome missed by "bad", none by "good"
    assert sleeps[:2] == [0.1, 0.2]
    assert "disk on fire" not in caplog.text and "bad" in caplog.text


async def test_transient_sink_failure_is_retried_without_loss() -> None:
    """A sink failing once gets the same batch again and ends with every row."""
    flaky = FailingSink(1)
    rec = Recorder([flaky], retry_backoff_s=0.0)
    await rec.start()
    for i in range(5):
        rec.record(outcome(i))
    await rec.stop()
    assert flaky.ids == [f"r{i}" for i in range(5)]
    assert rec.sink_failures["flaky"] == 1
    assert rec.lost["flaky"] == 0  # retried in time: nothing lost


async def test_hung_sink_times_out_and_others_still_get_data() -> None:
    """A sink that never returns is abandoned after write_timeout_s; the other sink is fed."""
    hung, good = GateSink(), ListSink()
    rec = Recorder([hung, good], retries=0, write_timeout_s=0.05)
    rec.record(outcome(1))
    await rec.stop()
    assert good.ids == ["r1"] and hung.ids == []
    assert rec.sink_failures["gate"] == 1
    assert rec.lost == {"gate": 1, "list": 0}


def test_invalid_sizes_are_refused() -> None:
    """A zero queue or batch size is a configuration error."""
    with pytest.raises(ValueError):
        Recorder([], max_queue=0)
    with pytest.raises(ValueError):
        Recorder([], batch_size=0)


async def test_big_batches_reach_sinks_in_slices_with_the_loop_free_between() -> None:
    """Each sink gets at most slice_size outcomes per call, and other tasks run in between."""
    ticks: list[int] = []
    sink = ListSink()

    class TickSink(ListSink):
        async def write(self, batch: Sequence[Outcome]) -> None:
            await super().write(batch)
            ticks.append(len(progress))

    progress: list[int] = []

    async def other_work() -> None:
        while True:
            progress.append(1)
            await asyncio.sleep(0)

    ticker = TickSink("tick")
    rec = Recorder([sink, ticker], batch_size=500, slice_size=100, flush_interval_s=60)
    for i in range(500):
        rec.record(outcome(i))
    worker = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    await rec.stop()
    worker.cancel()
    assert [len(b) for b in sink.batches] == [100] * 5
    assert sink.ids == ticker.ids == [f"r{i}" for i in range(500)]
    assert ticks == sorted(ticks) and ticks[-1] > ticks[0]  # the loop ran between slices
    assert rec.flushed == 500


async def test_a_sink_that_gives_up_skips_the_rest_of_its_batch_only() -> None:
    """After retries fail on one slice, that sink skips the batch; the other gets every slice."""
    bad, good = FailingSink(10**9, "bad"), ListSink("good")
    rec = Recorder([bad, good], batch_size=300, slice_size=100, retries=1, retry_backoff_s=0.0)
    for i in range(300):
        rec.record(outcome(i))
    await rec.stop()
    assert bad.calls == 2  # one slice, tried twice, then the batch is skipped for it
    assert len(good.batches) == 3 and len(good.ids) == 300


def test_zero_slice_size_is_refused() -> None:
    """A slice must hold at least one outcome."""
    with pytest.raises(ValueError):
        Recorder([], slice_size=0)
