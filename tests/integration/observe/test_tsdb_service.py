"""TSDB service on SQLite: the recorder sink, query validation, retention and pruning."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.conftest import sqlite_url
from tokenhub.errors import BadRequest
from tokenhub.observe.tsdb import DEFAULT_RETENTION_DAYS, RETENTION_KEY, TSDB, TSDBSink
from tokenhub.store.db import Database
from tokenhub.store.settings import SettingsRepo
from tokenhub.store.tsdb import Point, TSDBRepo
from tokenhub.types import Outcome, Usage

DAY = 86_400.0
NOW = 1_700_000_000.0


class FakeClock:
    """Wall-clock seconds that tests move by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A started, migrated SQLite database."""
    database = Database(sqlite_url(tmp_path / "tsdb.db"))
    await database.start()
    await database.migrate()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def tsdb(db: Database, clock: FakeClock) -> AsyncIterator[TSDB]:
    """A started TSDB whose hourly prune never fires during a test."""
    t = TSDB(TSDBRepo(db), SettingsRepo(db), clock=clock)
    await t.start()
    try:
        yield t
    finally:
        await t.stop()


def _outcome(**kw: object) -> Outcome:
    base: dict[str, object] = {
        "request_id": "r",
        "surface": "openai",
        "started_at": NOW - 30,
        "status": 200,
        "latency_ms": 120.0,
        "model": "gpt-x",
        "provider": "openai",
        "usage": Usage(prompt_tokens=11, completion_tokens=7),
        "cost_usd": 0.002,
    }
    base.update(kw)
    return Outcome(**base)  # type: ignore[arg-type]


async def test_sink_writes_one_point_per_metric_at_started_at(tsdb: TSDB) -> None:
    """A streamed outcome gives latency, cost, tokens in/out and TTFT points at started_at."""
    sink = tsdb.sink()
    assert isinstance(sink, TSDBSink) and sink.name == "tsdb"
    await sink.write([_outcome(ttft_ms=45.0, stream=True)])
    got = {}
    for metric in ("latency_ms", "cost_usd", "tokens_in", "tokens_out", "ttft_ms"):
        (series,) = (await tsdb.query(metric, NOW - 60, NOW, 60.0)).series
        (bucket,) = series.buckets
        assert bucket.ts == NOW - 60 and bucket.count == 1
        got[metric] = bucket.max
    assert got == {
        "latency_ms": 120.0,
        "cost_usd": 0.002,
        "tokens_in": 11.0,
        "tokens_out": 7.0,
        "ttft_ms": 45.0,
    }


async def test_sink_skips_modelless_outcomes_and_missing_ttft(tsdb: TSDB) -> None:
    """No model means no points; a non-streamed outcome has no ttft_ms point."""
    await tsdb.sink().write([_outcome(model=None, status=401), _outcome(), _outcome()])
    infos = {m.name: m for m in await tsdb.metrics()}
    assert sorted(infos) == ["cost_usd", "latency_ms", "tokens_in", "tokens_out"]
    assert infos["latency_ms"].points == 2
    series = infos["latency_ms"].series
    assert [(s.model, s.provider) for s in series] == [("gpt-x", "openai")]


async def test_sink_rolls_a_batch_up_per_series_and_second(tsdb: TSDB, db: Database) -> None:
    """A batch is stored as one row per (metric, model, provider, second), losslessly."""
    await tsdb.sink().write(
        [
            _outcome(started_at=NOW - 30.9, latency_ms=100.0),
            _outcome(started_at=NOW - 30.1, latency_ms=160.0),
            _outcome(started_at=NOW - 29.5, latency_ms=40.0),
            _outcome(started_at=NOW - 30.5, latency_ms=10.0, model="other"),
        ]
    )
    sql = "SELECT COUNT(*) FROM tsdb_points WHERE metric = 'latency_ms'"
    async with db.engine.connect() as conn:
        assert (await conn.exec_driver_sql(sql)).scalar() == 3  # gpt-x @-31, -30; other
    result = await tsdb.query("latency_ms", NOW - 31, NOW - 29, 1.0, model="gpt-x")
    (series,) = result.series
    assert [(b.ts, b.count, b.sum, b.max, b.avg) for b in series.buckets] == [
        (NOW - 31, 2, 260.0, 160.0, 130.0),
        (NOW - 30, 1, 40.0, 40.0, 40.0),
    ]
    infos = {m.name: m.points for m in await tsdb.metrics()}
    assert infos == {"latency_ms": 4, "cost_usd": 4, "tokens_in": 4, "tokens_out": 4}


async def test_sink_records_missing_provider_as_empty_label(tsdb: TSDB) -> None:
    """An outcome without a provider is stored under provider ''."""
    await tsdb.sink().write([_outcome(provider=None)])
    result = await tsdb.query("latency_ms", NOW - 60, NOW, 60.0, group_by=["provider"])
    assert [s.provider for s in result.series] == [""]


async def test_query_defaults_to_the_last_hour_by_minute(tsdb: TSDB) -> None:
    """Without start/end/step the window is [now-1h, now) in 60 s buckets."""
    await tsdb.sink().write([_outcome(started_at=NOW - 3700), _outcome(started_at=NOW - 10)])
    result = await tsdb.query("latency_ms")
    assert (result.start, result.end, result.step) == (NOW - 3600, NOW, 60.0)
    (series,) = result.series
    assert [b.ts for b in series.buckets] == [NOW - 60]


@pytest.mark.parametrize(
    ("start", "end", "step", "group_by", "code"),
    [
        (0.0, 100.0, 0.0, (), "invalid_step"),
        (0.0, 100.0, -5.0, (), "invalid_step"),
        (0.0, 100.0, 0.5, (), "invalid_step"),
        (100.0, 100.0, 1.0, (), "invalid_range"),
        (200.0, 100.0, 1.0, (), "invalid_range"),
        (0.0, 10_001.0, 1.0, (), "too_many_buckets"),
        (0.0, float("inf"), 1.0, (), "invalid_range"),
        (0.0, 100.0, 1.0, ("value",), "invalid_group_by"),
    ],
)
async def test_invalid_queries_are_bad_requests(
    tsdb: TSDB, start: float, end: float, step: float, group_by: tuple[str, ...], code: str
) -> None:
    """A bad step (below the 1 s resolution), window, bucket count or group label raises
    BadRequest with its code."""
    with pytest.raises(BadRequest) as info:
        await tsdb.query("latency_ms", start, end, step, group_by=group_by)
    assert info.value.code == code


async def test_exactly_max_buckets_is_allowed(tsdb: TSDB) -> None:
    """10,000 buckets is the limit, not past it."""
    result = await tsdb.query("latency_ms", 0.0, 10_000.0, 1.0)
    assert result.series == []


async def test_retention_defaults_to_seven_days_and_prunes_with_the_clock(
    tsdb: TSDB, clock: FakeClock
) -> None:
    """prune() deletes points older than now - 7 days; moving the clock prunes more."""
    assert tsdb.retention_days == DEFAULT_RETENTION_DAYS == 7
    await tsdb.write(
        [Point(NOW - d * DAY, "latency_ms", "m", "p", 1.0) for d in (0.5, 6.9, 7.1, 30)]
    )
    assert await tsdb.prune() == 2
    clock.now += DAY
    assert await tsdb.prune() == 1
    assert (await tsdb.metrics())[0].points == 1


async def test_set_retention_persists_and_shortens_the_horizon(
    tsdb: TSDB, db: Database, clock: FakeClock
) -> None:
    """A new retention is stored in settings, read by a fresh TSDB and used by prune."""
    await tsdb.write([Point(NOW - d * DAY, "m", "x", "y", 1.0) for d in (0.5, 1.5, 2.5)])
    assert await tsdb.set_retention(2) == 2
    assert await SettingsRepo(db).get(RETENTION_KEY) == {"days": 2}
    other = TSDB(TSDBRepo(db), SettingsRepo(db), clock=clock)
    await other.load()
    assert other.retention_days == 2
    assert await other.prune() == 1
    assert tsdb.horizon() == NOW - 2 * DAY


@pytest.mark.parametrize("days", [0, -1, 3651])
async def test_out_of_range_retention_is_refused(tsdb: TSDB, days: int) -> None:
    """Retention outside 1..3650 days raises BadRequest and keeps the old value."""
    with pytest.raises(BadRequest):
        await tsdb.set_retention(days)
    assert tsdb.retention_days == 7


async def test_corrupt_stored_retention_falls_back_to_default(
    db: Database, clock: FakeClock
) -> None:
    """A stored value that is not 1..3650 days is ignored in favour of 7."""
    await SettingsRepo(db).put(RETENTION_KEY, {"days": "forever"})
    t = TSDB(TSDBRepo(db), SettingsRepo(db), clock=clock)
    await t.load()
    assert t.retention_days == 7


async def test_prune_rereads_retention_set_by_another_replica(
    tsdb: TSDB, db: Database, clock: FakeClock
) -> None:
    """A retention written by another instance applies at this instance's next prune."""
    await tsdb.write([Point(NOW - 3 * DAY, "m", "x", "y", 1.0)])
    other = TSDB(TSDBRepo(db), SettingsRepo(db), clock=clock)
    await other.set_retention(1)
    assert await tsdb.prune() == 1
    assert tsdb.retention_days == 1


async def test_background_task_prunes_periodically_and_stops(
    db: Database, clock: FakeClock
) -> None:
    """start() prunes at once and every interval; stop() ends the task and is idempotent."""
    repo = TSDBRepo(db)
    await repo.insert([Point(NOW - 8 * DAY, "m", "x", "y", 1.0)])
    t = TSDB(repo, SettingsRepo(db), clock=clock, prune_interval_s=0.02)
    await t.start()
    try:
        await _until(lambda: _count(repo), 0)
        await repo.insert([Point(NOW - 6.5 * DAY, "m", "x", "y", 1.0)])
        assert await _count(repo) == 1
        clock.now += DAY  # the new point is now 7.5 days old
        await _until(lambda: _count(repo), 0)
    finally:
        await t.stop()
        await t.stop()
    await repo.insert([Point(NOW - 30 * DAY, "m", "x", "y", 1.0)])
    await asyncio.sleep(0.06)
    assert await _count(repo) == 1  # stopped: nothing prunes any more


async def _count(repo: TSDBRepo) -> int:
    return sum(m.points for m in await repo.metrics())


async def _until(read: Callable[[], Awaitable[int]], want: int) -> None:
    for _ in range(200):
        if await read() == want:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never reached {want}")
