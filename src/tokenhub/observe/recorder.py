"""The recorder: one ``Outcome`` per request in, batched writes to every sink out.

``record()`` is what the request path calls. It is synchronous and never waits: the
outcome goes into a bounded in-memory queue, or, when the queue is full, it is dropped
and counted in ``dropped`` (a metric reads it). A background task takes batches of up
to ``batch_size`` outcomes (or whatever arrived within ``flush_interval_s``) and hands
each batch to every sink concurrently. Each sink gets the batch in slices of at most
``slice_size`` outcomes with a yield to the event loop between slices, so a big batch
never stalls request handling for long; sinks that write from their own thread
(``observe.offloop``) take whole batches. A failing sink is retried a few times and then
skipped for the rest of that batch; it never holds up or loses the other sinks' data.

Shutdown order: stop accepting requests, let in-flight requests finish (each records
its outcome), then ``await recorder.stop()``, which writes everything still queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

from tokenhub.types import Outcome

log = logging.getLogger("tokenhub.recorder")

Sleep = Callable[[float], Awaitable[None]]


@runtime_checkable
class BatchSink(Protocol):
    """A destination for outcomes (request logs, metrics, events, TSDB...).

    ``write`` receives batches in the order outcomes were recorded. It may raise; the
    recorder logs the failure, retries, and finally skips the batch for this sink only.
    """

    name: str

    async def write(self, batch: Sequence[Outcome]) -> None: ...


class Recorder:
    """Queues outcomes without blocking and flushes them in batches to ``sinks``."""

    def __init__(
        self,
        sinks: Sequence[BatchSink],
        *,
        max_queue: int = 10_000,
        batch_size: int = 500,
        flush_interval_s: float = 0.25,
        retries: int = 2,
        retry_backoff_s: float = 0.1,
        write_timeout_s: float = 30.0,
        slice_size: int = 100,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if max_queue < 1 or batch_size < 1 or flush_interval_s <= 0 or retries < 0:
            raise ValueError("need max_queue >= 1, batch_size >= 1, flush_interval_s > 0")
        if slice_size < 1:
            raise ValueError("need slice_size >= 1")
        self.sinks = list(sinks)
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.retries = retries
        self.retry_backoff_s = retry_backoff_s
        self.write_timeout_s = write_timeout_s
        self.slice_size = slice_size
        self._sleep = sleep
        self._queue: deque[Outcome] = deque()
        self._wake = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self.dropped = 0  # outcomes refused: queue full, or recorded after stop()
        self.accepted = 0
        self.flushed = 0  # outcomes handed to every sink (whether each sink succeeded)
        self.sink_failures: dict[str, int] = {s.name: 0 for s in self.sinks}
        # Outcomes a sink gave up on after its retries: written by the other sinks, lost
        # to this one (a request log row missing, say). Exported as a metric per sink.
        self.lost: dict[str, int] = {s.name: 0 for s in self.sinks}

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def record(self, outcome: Outcome) -> None:
        """Queue ``outcome`` for the sinks; never blocks, drops (and counts) when full."""
        if self._closed or len(self._queue) >= self.max_queue:
            self.dropped += 1
            return
        self._queue.append(outcome)
        self.accepted += 1
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    async def start(self) -> None:
        """Start the background writer (a no-op when running)."""
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name="tokenhub-recorder")

    async def stop(self) -> None:
        """Write everything still queued to every sink, then stop. Idempotent."""
        if self._closed:
            return
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()  # not started, or the task ended early: drain here
        self._closed = True

    async def flush(self) -> None:
        """Write everything queued now (and wait for a batch being written)."""
        while self._queue:
            await self._write_next()
        async with self._write_lock:  # a batch taken by the task may still be in flight
            pass

    async def _run(self) -> None:
        while not (self._closing and not self._queue):
            if len(self._queue) < self.batch_size and not self._closing:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            if self._queue:
                await self._write_next()

    async def _write_next(self) -> None:
        async with self._write_lock:
            n = min(self.batch_size, len(self._queue))
            batch = [self._queue.popleft() for _ in range(n)]
            if batch:
                await asyncio.gather(*(self._feed_sink(s, batch) for s in self.sinks))
                self.flushed += len(batch)

    async def _feed_sink(self, sink: BatchSink, batch: list[Outcome]) -> None:
        """Hand ``batch`` to ``sink`` slice by slice, yielding to the loop in between.

        A sink with ``sliced = False`` (one that does its work off the serving loop)
        gets the whole batch at once.
        """
        step = self.slice_size if getattr(sink, "sliced", True) else max(1, len(batch))
        for start in range(0, len(batch), step):
            if start:
                await asyncio.sleep(0)  # let requests run between slices
            if not await self._write_sink(sink, batch[start : start + step]):
                # This sink gave up: the rest of the batch is skipped for it, and counted.
                self.lost[sink.name] = self.lost.get(sink.name, 0) + len(batch) - start
                return

    async def _write_sink(self, sink: BatchSink, batch: Sequence[Outcome]) -> bool:
        for attempt in range(self.retries + 1):
            try:
                await asyncio.wait_for(sink.write(batch), self.write_timeout_s)
                return True
            except Exception as exc:  # a sink's failure must never reach the others
                self.sink_failures[sink.name] = self.sink_failures.get(sink.name, 0) + 1
                last = attempt == self.retries
                log.warning(
                    "recorder sink %s failed on a batch of %d (%s)%s",
                    sink.name,
                    len(batch),
                    type(exc).__name__,
                    "; batch skipped for this sink" if last else "; retrying",
                )
                if not last:
                    await self._sleep(self.retry_backoff_s * 2**attempt)
        return False
