"""The embedded time-series store: one table of 1-second rollups and its repository.

Measurements arrive as points ``(ts, metric, model, provider, value)`` but are never
stored one by one: a batch is rolled up in memory by ``(metric, model, provider,
floor(ts))`` into ``(count, sum, max, min)`` and each group becomes one row stamped with
its second. Two batches touching the same second simply leave two rows; every read
aggregates rows, so that is invisible. The table is append-only: rows are inserted by
the recorder's TSDB sink and deleted only by retention.

Time resolution is therefore one second: a row counts as lying at its second
everywhere (query windows, buckets, retention). Downsampling runs in SQL, identically
on SQLite and PostgreSQL: a row at second ``s`` falls in bucket
``floor((s - start) / step)``, and each bucket reports ``avg = sum(sum) / sum(count)``,
``max(max)``, ``sum(count)`` and ``sum(sum)``. Steps below one second are refused.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sqlalchemy as sa

from tokenhub.store.db import BulkInsert, Database
from tokenhub.store.tables import metadata

GROUP_COLUMNS = ("model", "provider")
"""The labels a query may group by."""

MIN_STEP_S = 1.0
"""The storage resolution: no query may bucket finer than this."""

tsdb_points = sa.Table(
    "tsdb_points",
    metadata,
    sa.Column("ts", sa.BigInteger, nullable=False),  # epoch second of the rollup
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("model", sa.String(300), nullable=False),
    sa.Column("provider", sa.String(200), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("sum", sa.Float, nullable=False),
    sa.Column("max", sa.Float, nullable=False),
    sa.Column("min", sa.Float, nullable=False),
    # No primary key: rows have no identity, and one index fewer keeps inserts cheap.
    sa.Index("ix_tsdb_points_metric_ts", "metric", "ts"),
    sa.Index("ix_tsdb_points_metric_model_provider_ts", "metric", "model", "provider", "ts"),
    # Retention deletes by time alone; without this it would scan the table.
    sa.Index("ix_tsdb_points_ts", "ts"),
)

RollupKey = tuple[str, str, str, int]
"""``(metric, model, provider, second)``: what one stored row summarizes."""

Groups = dict[RollupKey, list[float]]
"""Rollups being accumulated: key -> ``[count, sum, max, min]``."""


@dataclass(frozen=True, slots=True)
class Point:
    """One measurement: ``value`` of ``metric`` for ``model`` at ``provider`` at ``ts``."""

    ts: float
    metric: str
    model: str
    provider: str
    value: float


class Rollup(NamedTuple):
    """One stored row: ``points`` values of one series within second ``ts``.

    Fields are in the table's column order (``points`` is the ``count`` column; the
    name ``count`` would shadow ``tuple.count``).
    """

    ts: int
    metric: str
    model: str
    provider: str
    points: int
    sum: float
    max: float
    min: float


INSERT_POINTS = BulkInsert(tsdb_points, [c.name for c in tsdb_points.columns])


@dataclass(frozen=True, slots=True)
class Bucket:
    """The points of one ``[ts, ts + step)`` interval, summarized."""

    ts: float
    avg: float
    max: float
    count: int
    sum: float


@dataclass(slots=True)
class Series:
    """The buckets of one group; labels not grouped by (or filtered on) are None.

    Buckets are sparse: intervals without points are left out.
    """

    model: str | None = None
    provider: str | None = None
    buckets: list[Bucket] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SeriesCount:
    model: str
    provider: str
    points: int


@dataclass(slots=True)
class MetricInfo:
    """A metric name, its point count and the (model, provider) series it has."""

    name: str
    points: int = 0
    series: list[SeriesCount] = field(default_factory=list)


def accumulate(groups: Groups, key: RollupKey, value: float) -> None:
    """Fold ``value`` into the rollup of ``key`` (the hot loop of the sink)."""
    acc = groups.get(key)
    if acc is None:
        groups[key] = [1, value, value, value]
        return
    acc[0] += 1
    acc[1] += value
    if value > acc[2]:
        acc[2] = value
    elif value < acc[3]:
        acc[3] = value


def to_rollups(groups: Groups) -> builtins.list[Rollup]:
    """The rows of accumulated ``groups``."""
    return [
        Rollup(sec, metric, model, provider, int(n), total, hi, lo)
        for (metric, model, provider, sec), (n, total, hi, lo) in groups.items()
    ]


def rollup(points: Iterable[Point]) -> builtins.list[Rollup]:
    """``points`` rolled up by (metric, model, provider, second)."""
    groups: Groups = {}
    for p in points:
        key = (p.metric, p.model, p.provider, math.floor(p.ts))
        accumulate(groups, key, float(p.value))
    return to_rollups(groups)


class TSDBRepo:
    """Insert, downsample, list and prune time-series rollups in ``db``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, points: Iterable[Point]) -> int:
        """Roll ``points`` up and insert the rows; returns how many points were written."""
        rows = rollup(points)
        await self.insert_rollups(rows)
        return sum(r.points for r in rows)

    async def insert_rollups(self, rows: Sequence[Rollup]) -> int:
        """Insert ``rows`` in one transaction (``BulkInsert``); returns how many were written."""
        if not rows:
            return 0
        async with self._db.engine.begin() as conn:
            await INSERT_POINTS(conn, rows)
        return len(rows)

    async def query(
        self,
        metric: str,
        start: float,
        end: float,
        step: float,
        *,
        model: str | None = None,
        provider: str | None = None,
        group_by: Sequence[str] = (),
    ) -> builtins.list[Series]:
        """Points of ``metric`` in ``[start, end)`` downsampled to ``step`` seconds.

        A row counts as lying at its second. ``step`` must be at least
        :data:`MIN_STEP_S` (else ValueError). ``group_by`` is a subset of
        :data:`GROUP_COLUMNS`; one :class:`Series` comes back per distinct group
        (ordered by its labels), or a single one when not grouping. No points at all
        gives an empty list.
        """
        groups = _check_group_by(group_by)
        if not step >= MIN_STEP_S:
            raise ValueError(f"step must be at least {MIN_STEP_S} s (the storage resolution)")
        stmt = _bucket_query(self._db.dialect, metric, start, end, step, model, provider, groups)
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return _to_series(rows, start, step, groups, model, provider)

    async def metrics(self) -> builtins.list[MetricInfo]:
        """Every metric with points, with its point count per (model, provider) series."""
        c = tsdb_points.c
        stmt = (
            sa.select(c.metric, c.model, c.provider, sa.func.sum(c["count"]).label("n"))
            .group_by(c.metric, c.model, c.provider)
            .order_by(c.metric, c.model, c.provider)
        )
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        found: dict[str, MetricInfo] = {}
        for row in rows:
            info = found.setdefault(row.metric, MetricInfo(row.metric))
            info.points += int(row.n)
            info.series.append(SeriesCount(row.model, row.provider, int(row.n)))
        return builtins.list(found.values())

    async def prune(self, before_ts: float) -> int:
        """Delete every point whose second is before ``before_ts``; returns how many."""
        c = tsdb_points.c
        stmt = sa.delete(tsdb_points).where(c.ts < _second_bound(before_ts)).returning(c["count"])
        async with self._db.engine.begin() as conn:
            counts = (await conn.execute(stmt)).scalars().all()
        return int(sum(counts))


def _second_bound(t: float) -> int:
    # For integer seconds s: s >= t <=> s >= ceil(t) and s < t <=> s < ceil(t). Integer
    # bounds keep PostgreSQL on the bigint index (a float8 bound would cast the column).
    return math.ceil(t)


def _check_group_by(group_by: Sequence[str]) -> tuple[str, ...]:
    unknown = set(group_by) - set(GROUP_COLUMNS)
    if unknown:
        raise ValueError(f"cannot group by {sorted(unknown)}; choose from {GROUP_COLUMNS}")
    # Canonical order, duplicates dropped: the result must not depend on how it was asked.
    return tuple(col for col in GROUP_COLUMNS if col in group_by)


def _bucket_index(dialect: str, start: float, step: float) -> sa.ColumnElement[int]:
    offset = (sa.cast(tsdb_points.c.ts, sa.Float) - sa.literal(float(start), sa.Float)) / (
        sa.literal(float(step), sa.Float)
    )
    if dialect == "postgresql":
        # PostgreSQL's CAST(double AS bigint) rounds to nearest; floor first.
        return sa.cast(sa.func.floor(offset), sa.BigInteger)
    # SQLite's CAST truncates toward zero, which is floor here since ts >= start; its
    # floor() exists only in builds with the math functions compiled in.
    return sa.cast(offset, sa.Integer)


def _bucket_query(
    dialect: str,
    metric: str,
    start: float,
    end: float,
    step: float,
    model: str | None,
    provider: str | None,
    groups: tuple[str, ...],
) -> sa.Select[Any]:
    c = tsdb_points.c
    where = [c.metric == metric, c.ts >= _second_bound(start), c.ts < _second_bound(end)]
    if model is not None:
        where.append(c.model == model)
    if provider is not None:
        where.append(c.provider == provider)
    labels = [c[g] for g in groups]
    # Bucket in a subquery and group the outer query by its column: grouping by the
    # expression itself would repeat its bind parameters, which PostgreSQL cannot match
    # against the select list.
    inner = sa.select(
        _bucket_index(dialect, start, step).label("b"), c["count"], c["sum"], c["max"], *labels
    ).where(*where)
    sub = inner.subquery()
    keys = [sub.c[g] for g in groups]
    return (
        sa.select(
            *keys,
            sub.c.b,
            sa.func.max(sub.c["max"]).label("max"),
            sa.func.sum(sub.c["count"]).label("count"),
            sa.func.sum(sub.c["sum"]).label("sum"),
        )
        .group_by(*keys, sub.c.b)
        .order_by(*keys, sub.c.b)
    )


def _to_series(
    rows: Sequence[sa.Row[Any]],
    start: float,
    step: float,
    groups: tuple[str, ...],
    model: str | None,
    provider: str | None,
) -> builtins.list[Series]:
    out: dict[tuple[str, ...], Series] = {}
    for row in rows:
        m = row._mapping
        key = tuple(m[g] for g in groups)
        series = out.get(key)
        if series is None:
            series = Series(model=m["model"] if "model" in groups else model)
            series.provider = m["provider"] if "provider" in groups else provider
            out[key] = series
        count, total = int(m["count"]), float(m["sum"])
        series.buckets.append(
            Bucket(
                ts=start + int(m["b"]) * step,
                avg=total / count,
                max=float(m["max"]),
                count=count,
                sum=total,
            )
        )
    return builtins.list(out.values())
