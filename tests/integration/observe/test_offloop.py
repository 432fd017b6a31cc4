"""The recorder's database sinks writing from their own thread, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tokenhub.observe.logsink import LogSink, request_values
from tokenhub.observe.offloop import THREAD_NAME, DatabaseWriter, Rows
from tokenhub.observe.recorder import Recorder
from tokenhub.observe.tsdb import TSDB
from tokenhub.store.db import SQLITE_ROWS_PER_INSERT, BulkInsert, Database
from tokenhub.store.logs import REQUEST_COLUMNS, LogRepo, request_log
from tokenhub.store.settings import SettingsRepo
from tokenhub.store.tsdb import TSDBRepo
from tokenhub.types import Attempt, Decision, ErrorClass, Outcome, Usage


def outcome(i: int, *, failover: bool = False) -> Outcome:
    attempts = [Attempt("m1", "p1", latency_ms=20.0)]
    if failover:
        attempts.insert(0, Attempt("m0", "p0", ErrorClass.TRANSIENT, 503, "down", 5.0))
    return Outcome(
        request_id=f"off-{i:05d}",
        surface="openai",
        started_at=time.time() - 5 + i / 1000,
        status=200,
        latency_ms=25.0 + i % 7,
        model="m1",
        provider="p1",
        api_key_id="k1",
        usage=Usage(10 + i, 5),
        cost_usd=0.0001,
        decision=Decision(attempts=attempts, estimated_tokens=10),
    )


class ThreadSpy:
    """A row sink recording the thread and batch sizes it is called with."""

    def __init__(self, name: str = "spy", fail: bool = False) -> None:
        self.name = name
        self.threads: set[str] = set()
        self.sizes: list[int] = []
        self.fail = fail

    def rows(self, batch: Sequence[Outcome]) -> Rows:
        self.threads.add(threading.current_thread().name)
        self.sizes.append(len(batch))
        if self.fail:
            raise RuntimeError("sink down")
        return []


async def test_sinks_run_in_the_writer_thread_with_whole_batches(db: Database) -> None:
    """Wrapped sinks run in the writer's thread and get whole batches (no slicing);
    every row reaches the store through the writer's own engine."""
    writer = DatabaseWriter(db.url)
    await writer.start()
    spy = ThreadSpy()
    try:
        sinks = [
            writer.sink(spy),
            writer.sink(LogSink(LogRepo(db))),
            writer.sink(TSDB(TSDBRepo(db), SettingsRepo(db)).sink()),
        ]
        assert [s.name for s in sinks] == ["spy", "logs", "tsdb"]
        recorder = Recorder(sinks, batch_size=400, slice_size=50)
        for i in range(1000):
            recorder.record(outcome(i, failover=i % 10 == 0))
        await recorder.stop()
    finally:
        await writer.stop()
    assert spy.threads == {THREAD_NAME}
    assert spy.sizes == [400, 400, 200]
    assert recorder.sink_failures == {"spy": 0, "logs": 0, "tsdb": 0}

    repo = LogRepo(db)
    rows = await repo.list_requests(limit=2000)
    assert len(rows) == 1000
    assert {r["request_id"] for r in rows} == {f"off-{i:05d}" for i in range(1000)}
    rewards = await repo.list_rewards(limit=2000)
    assert len(rewards) == 1100  # one per attempt: 100 requests failed over once
    assert sum(not r["success"] for r in rewards) == 100


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="OS thread names: Linux")
async def test_the_writer_thread_is_named_in_the_os_too() -> None:
    """``top -H`` shows the writer by name (the kernel keeps 15 bytes of it)."""
    writer = DatabaseWriter("sqlite+aiosqlite:///:memory:")

    def comms() -> list[str]:
        tasks = Path("/proc/self/task")
        return [(t / "comm").read_text().strip() for t in tasks.iterdir()]

    await writer.start()
    try:
        assert THREAD_NAME[:15] in comms()
    finally:
        await writer.stop()
    assert THREAD_NAME[:15] not in comms()


async def test_a_failing_sink_in_the_thread_is_retried_and_skipped(db: Database) -> None:
    """An exception raised in the writer thread reaches the recorder, which retries
    and then skips that sink; the other sinks still get the batch."""
    writer = DatabaseWriter(db.url)
    await writer.start()
    bad, good = ThreadSpy("bad", fail=True), ThreadSpy("good")
    try:
        recorder = Recorder(
            [writer.sink(bad), writer.sink(LogSink(LogRepo(db))), writer.sink(good)],
            retries=1,
            retry_backoff_s=0.001,
        )
        recorder.record(outcome(1))
        await recorder.stop()
    finally:
        await writer.stop()
    assert bad.sizes == [1, 1] and good.sizes == [1]
    assert recorder.sink_failures == {"bad": 2, "logs": 0, "good": 0}
    assert recorder.lost == {"bad": 1, "logs": 0, "good": 0}
    assert [r["request_id"] for r in await LogRepo(db).list_requests()] == ["off-00001"]


async def test_writer_stop_is_idempotent_and_refuses_work_after() -> None:
    writer = DatabaseWriter("sqlite+aiosqlite:///:memory:")
    await writer.start()
    await writer.start()  # no second thread
    assert writer.running
    await writer.stop()
    await writer.stop()
    assert not writer.running
    assert not any(t.name == THREAD_NAME for t in threading.enumerate())
    with pytest.raises(RuntimeError, match="start"):
        await writer.write(ThreadSpy(), [outcome(1)])


async def test_nothing_is_lost_while_the_serving_loop_is_busy(db: Database) -> None:
    """With the serving loop never idle (dozens of tasks always ready) every outcome still
    reaches the store through the writer. (That the writer keeps pace under real load
    is a throughput property: the bench measures it, as dropped outcomes per run.)"""
    writer = DatabaseWriter(db.url)
    await writer.start()
    stop = asyncio.Event()

    async def busy() -> None:
        while not stop.is_set():  # noqa: ASYNC110 - spinning is the point: a busy loop
            await asyncio.sleep(0)

    spinners = [asyncio.create_task(busy()) for _ in range(30)]
    try:
        recorder = Recorder([writer.sink(LogSink(LogRepo(db)))])
        await recorder.start()
        for i in range(2000):
            recorder.record(outcome(i))
            if i % 500 == 0:
                await asyncio.sleep(0)
        await asyncio.wait_for(recorder.stop(), 60)
        assert recorder.dropped == 0 and recorder.flushed == 2000
    finally:
        stop.set()
        await asyncio.gather(*spinners)
        await writer.stop()
    assert len(await LogRepo(db).list_requests(limit=10_000)) == 2000


async def test_bulk_insert_uses_few_statement_shapes_on_sqlite(sqlite_db: Database) -> None:
    """Whatever the batch sizes, a table gets at most nine multi-row statement shapes
    (powers of two up to SQLITE_ROWS_PER_INSERT), so prepared statements cannot pile up
    in the driver's cache; every row still lands exactly once."""
    insert = BulkInsert(request_log, REQUEST_COLUMNS)
    total = 0
    async with sqlite_db.engine.begin() as conn:
        for size in [*range(1, 40), 255, 256, 257, 300, 511, 600]:
            rows = [request_values(outcome(total + i)) for i in range(size)]
            await insert(conn, rows)
            total += size
    shapes = sorted(n for _, n in insert._sql)
    assert shapes == [2**k for k in range(9)] and shapes[-1] == SQLITE_ROWS_PER_INSERT
    async with sqlite_db.engine.connect() as conn:
        stored = (await conn.exec_driver_sql("SELECT count(*) FROM request_log")).scalar()
    assert stored == total


async def test_bulk_insert_spans_several_statements_on_sqlite(db: Database) -> None:
    """More rows than one multi-row INSERT holds land whole and in order of the values."""
    n = SQLITE_ROWS_PER_INSERT * 2 + 17
    await LogSink(LogRepo(db)).write([outcome(i) for i in range(n)])
    rows = await LogRepo(db).list_requests(limit=n)
    assert len(rows) == n
    by_id = {r["request_id"]: r for r in rows}
    for i in (0, SQLITE_ROWS_PER_INSERT - 1, SQLITE_ROWS_PER_INSERT, n - 1):
        assert by_id[f"off-{i:05d}"]["tokens_in"] == 10 + i
