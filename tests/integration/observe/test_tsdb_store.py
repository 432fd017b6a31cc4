"""TSDBRepo on SQLite and PostgreSQL: 1-second rollups and SQL downsampling against
hand-computed buckets."""

from __future__ import annotations

import pytest

from tokenhub.store.db import Database
from tokenhub.store.tsdb import Bucket, Point, TSDBRepo

START, STEP, END = 1000.0, 60.0, 1240.0

# latency_ms points; the comment names the 60 s bucket each falls in when start=1000.
# Each is stored in the rollup of its whole second (999.5 in second 999, and so on).
POINTS = [
    Point(999.5, "latency_ms", "a", "p", 1000.0),  # before start: never counted
    Point(1000.0, "latency_ms", "a", "p", 10.0),  # b0 (inclusive start)
    Point(1030.0, "latency_ms", "a", "p", 20.0),  # b0
    Point(1059.999, "latency_ms", "a", "p", 30.0),  # b0 (rounding would put it in b1)
    Point(1060.0, "latency_ms", "a", "p", 100.0),  # b1
    Point(1185.0, "latency_ms", "a", "p", 5.0),  # b3 (b2 is empty)
    Point(1239.0, "latency_ms", "a", "p", 7.0),  # b3
    Point(1240.0, "latency_ms", "a", "p", 999.0),  # at end: excluded
    Point(1010.0, "latency_ms", "b", "q", 50.0),  # b0, other series
    Point(1010.0, "cost_usd", "a", "p", 0.25),  # other metric
]


@pytest.fixture
async def repo(db: Database) -> TSDBRepo:
    """A repo holding POINTS."""
    r = TSDBRepo(db)
    assert await r.insert(POINTS) == len(POINTS)
    return r


def _b(ts: float, avg: float, mx: float, count: int, total: float) -> Bucket:
    return Bucket(ts=ts, avg=avg, max=mx, count=count, sum=total)


async def test_ungrouped_buckets_match_hand_computation(repo: TSDBRepo) -> None:
    """All series together: avg/max/count/sum per 60 s bucket, empty buckets left out."""
    (series,) = await repo.query("latency_ms", START, END, STEP)
    assert (series.model, series.provider) == (None, None)
    assert series.buckets == [
        _b(1000.0, 27.5, 50.0, 4, 110.0),
        _b(1060.0, 100.0, 100.0, 1, 100.0),
        _b(1180.0, 6.0, 7.0, 2, 12.0),
    ]


async def test_step_wider_than_window_gives_one_bucket(repo: TSDBRepo) -> None:
    """A step covering the whole window summarizes every point inside it."""
    (series,) = await repo.query("latency_ms", START, END, 3600.0)
    assert series.buckets == [_b(1000.0, 222.0 / 7, 100.0, 7, 222.0)]


async def test_offset_start_shifts_bucket_edges(repo: TSDBRepo) -> None:
    """Buckets are aligned to start, not to the epoch: start=1030 regroups the points."""
    (series,) = await repo.query("latency_ms", 1030.0, 1150.0, 60.0)
    # [1030,1090): 20, 30, 100 from a; [1090,1150): nothing
    assert series.buckets == [_b(1030.0, 50.0, 100.0, 3, 150.0)]


async def test_filter_by_model_keeps_its_label(repo: TSDBRepo) -> None:
    """model= restricts points to that model and labels the one series with it."""
    (series,) = await repo.query("latency_ms", START, END, STEP, model="a")
    assert (series.model, series.provider) == ("a", None)
    assert series.buckets[0] == _b(1000.0, 20.0, 30.0, 3, 60.0)
    assert [b.ts for b in series.buckets] == [1000.0, 1060.0, 1180.0]


async def test_filter_by_provider(repo: TSDBRepo) -> None:
    """provider= restricts points to that provider."""
    (series,) = await repo.query("latency_ms", START, END, STEP, provider="q")
    assert (series.model, series.provider) == (None, "q")
    assert series.buckets == [_b(1000.0, 50.0, 50.0, 1, 50.0)]


async def test_group_by_model_gives_one_series_per_model(repo: TSDBRepo) -> None:
    """group_by=model splits the buckets per model, ordered by model."""
    a, b = await repo.query("latency_ms", START, END, STEP, group_by=["model"])
    assert (a.model, a.provider, b.model, b.provider) == ("a", None, "b", None)
    assert a.buckets == [
        _b(1000.0, 20.0, 30.0, 3, 60.0),
        _b(1060.0, 100.0, 100.0, 1, 100.0),
        _b(1180.0, 6.0, 7.0, 2, 12.0),
    ]
    assert b.buckets == [_b(1000.0, 50.0, 50.0, 1, 50.0)]


async def test_group_by_both_labels_in_any_order(repo: TSDBRepo) -> None:
    """group_by provider+model labels each series with both, whatever order was asked."""
    got = await repo.query("latency_ms", START, END, STEP, group_by=["provider", "model"])
    assert [(s.model, s.provider, len(s.buckets)) for s in got] == [("a", "p", 3), ("b", "q", 1)]


async def test_unknown_metric_and_empty_window_are_empty(repo: TSDBRepo) -> None:
    """A metric with no points, or a window with none, yields no series."""
    assert await repo.query("nope", START, END, STEP) == []
    assert await repo.query("latency_ms", 5000.0, 6000.0, STEP) == []


async def test_unknown_group_label_is_refused(repo: TSDBRepo) -> None:
    """Grouping by a column that is not a label raises ValueError naming it."""
    with pytest.raises(ValueError, match="value"):
        await repo.query("latency_ms", START, END, STEP, group_by=["value"])


async def test_metrics_lists_names_counts_and_series(repo: TSDBRepo) -> None:
    """metrics() names every metric with its point count per (model, provider)."""
    infos = {m.name: m for m in await repo.metrics()}
    assert sorted(infos) == ["cost_usd", "latency_ms"]
    lat = infos["latency_ms"]
    assert lat.points == 9
    assert [(s.model, s.provider, s.points) for s in lat.series] == [("a", "p", 8), ("b", "q", 1)]
    assert infos["cost_usd"].points == 1


async def test_prune_deletes_strictly_older_points(repo: TSDBRepo) -> None:
    """prune(t) deletes points whose second is < t, reports how many, keeps second t."""
    assert await repo.prune(1030.0) == 4  # 999.5, 1000, 1010 (latency b), 1010 (cost)
    assert await repo.prune(1030.0) == 0
    (series,) = await repo.query("latency_ms", 0.0, END, 10_000.0)
    assert series.buckets[0].count == 5


async def test_insert_of_nothing_writes_nothing(db: Database) -> None:
    """An empty batch is a no-op that reports 0."""
    repo = TSDBRepo(db)
    assert await repo.insert([]) == 0
    assert await repo.metrics() == []


async def test_sub_second_steps_are_refused(repo: TSDBRepo) -> None:
    """Storage is 1-second rollups, so a step below 1 s raises ValueError."""
    with pytest.raises(ValueError, match="at least 1"):
        await repo.query("latency_ms", START, END, 0.5)


async def test_fractional_steps_bucket_by_the_rows_second(db: Database) -> None:
    """A 1.5 s step buckets each point by its whole second; integral bounds still work."""
    repo = TSDBRepo(db)
    times = [10, 10.25, 10.5, 10.75, 11.5, 12.0]
    await repo.insert([Point(t, "m", "x", "y", float(i)) for i, t in enumerate(times)])
    (series,) = await repo.query("m", 10, 13, 1.5)
    # [10, 11.5): seconds 10 (values 0..3) and 11 (the point at 11.5: value 4);
    # [11.5, 13): second 12 (value 5).
    assert series.buckets == [_b(10.0, 2.0, 4.0, 5, 10.0), _b(11.5, 5.0, 5.0, 1, 5.0)]


async def _rows(db: Database) -> list[tuple[object, ...]]:
    sql = 'SELECT ts, metric, model, provider, "count", "sum", "max", "min" FROM tsdb_points'
    async with db.engine.connect() as conn:
        return [tuple(r) for r in (await conn.exec_driver_sql(sql + " ORDER BY ts, metric"))]


async def test_a_batch_is_stored_as_one_row_per_series_and_second(db: Database) -> None:
    """Points of one series in one second become one (count, sum, max, min) row."""
    repo = TSDBRepo(db)
    written = await repo.insert(
        [
            Point(20.1, "m", "x", "y", 4.0),
            Point(20.9, "m", "x", "y", -1.0),
            Point(20.5, "m", "x", "y", 3.0),
            Point(21.0, "m", "x", "y", 7.0),
            Point(20.2, "n", "x", "y", 2.0),
        ]
    )
    assert written == 5
    assert await _rows(db) == [
        (20, "m", "x", "y", 3, 6.0, 4.0, -1.0),
        (20, "n", "x", "y", 1, 2.0, 2.0, 2.0),
        (21, "m", "x", "y", 1, 7.0, 7.0, 7.0),
    ]


async def test_two_batches_in_one_second_read_as_one(db: Database) -> None:
    """A second batch in the same second adds a row; reads merge them exactly."""
    repo = TSDBRepo(db)
    await repo.insert([Point(30.2, "m", "x", "y", 1.0), Point(30.4, "m", "x", "y", 2.0)])
    await repo.insert([Point(30.7, "m", "x", "y", 9.0)])
    assert len(await _rows(db)) == 2
    (series,) = await repo.query("m", 30, 31, 1.0)
    assert series.buckets == [_b(30.0, 4.0, 9.0, 3, 12.0)]
    (info,) = await repo.metrics()
    assert info.points == 3
    assert await repo.prune(31.0) == 3
    assert await _rows(db) == []
