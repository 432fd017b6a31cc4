"""The embedded time-series store: one narrow table of points and its repository.

A point is ``(ts, metric, model, provider, value)``. The table is append-only: points
are inserted in batches by the recorder's TSDB sink and deleted only by retention.
Downsampling runs in SQL, identically on SQLite and PostgreSQL: a point at ``ts``
falls in bucket ``floor((ts - start) / step)``, and each bucket reports avg, max,
count and sum of its values.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from tokenhub.store.db import Database
from tokenhub.store.tables import metadata

GROUP_COLUMNS = ("model", "provider")
"""The labels a query may group by."""

tsdb_points = sa.Table(
    "tsdb_points",
    metadata,
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("model", sa.String(300), nullable=False),
    sa.Column("provider", sa.String(200), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    # No primary key: points have no identity, and one index fewer keeps inserts cheap.
    sa.Index("ix_tsdb_points_metric_ts", "metric", "ts"),
    sa.Index("ix_tsdb_points_metric_model_provider_ts", "metric", "model", "provider", "ts"),
    # Retention deletes by time alone; without this it would scan the table.
    sa.Index("ix_tsdb_points_ts", "ts"),
)


@dataclass(frozen=True, slots=True)
class Point:
    """One measurement: ``value`` of ``metric`` for ``model`` at ``provider`` at ``ts``."""

    ts: float
    metric: str
    model: str
    provider: str
    value: float


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


class TSDBRepo:
    """Insert, downsample, list and prune time-series points in ``db``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, points: Iterable[Point]) -> int:
        """Insert ``points`` in one executemany; returns how many were written."""
        rows = [_to_row(p) for p in points]
        if not rows:
            return 0
        async with self._db.engine.begin() as conn:
            await conn.execute(sa.insert(tsdb_points), rows)
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

        ``group_by`` is a subset of :data:`GROUP_COLUMNS`; one :class:`Series` comes back
        per distinct group (ordered by its labels), or a single one when not grouping.
        No points at all gives an empty list.
        """
        groups = _check_group_by(group_by)
        stmt = _bucket_query(self._db.dialect, metric, start, end, step, model, provider, groups)
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return _to_series(rows, start, step, groups, model, provider)

    async def metrics(self) -> builtins.list[MetricInfo]:
        """Every metric with points, with its point count per (model, provider) series."""
        c = tsdb_points.c
        stmt = (
            sa.select(c.metric, c.model, c.provider, sa.func.count().label("n"))
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
        """Delete every point older than ``before_ts``; returns how many were deleted."""
        stmt = sa.delete(tsdb_points).where(tsdb_points.c.ts < float(before_ts))
        async with self._db.engine.begin() as conn:
            result = await conn.execute(stmt)
        return int(result.rowcount)


def _to_row(p: Point) -> dict[str, Any]:
    return {
        "ts": float(p.ts),
        "metric": p.metric,
        "model": p.model,
        "provider": p.provider,
        "value": float(p.value),
    }


def _check_group_by(group_by: Sequence[str]) -> tuple[str, ...]:
    unknown = set(group_by) - set(GROUP_COLUMNS)
    if unknown:
        raise ValueError(f"cannot group by {sorted(unknown)}; choose from {GROUP_COLUMNS}")
    # Canonical order, duplicates dropped: the result must not depend on how it was asked.
    return tuple(col for col in GROUP_COLUMNS if col in group_by)


def _bucket_index(dialect: str, start: float, step: float) -> sa.ColumnElement[int]:
    offset = (tsdb_points.c.ts - sa.literal(float(start), sa.Float)) / sa.literal(
        float(step), sa.Float
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
    where = [c.metric == metric, c.ts >= float(start), c.ts < float(end)]
    if model is not None:
        where.append(c.model == model)
    if provider is not None:
        where.append(c.provider == provider)
    labels = [c[g] for g in groups]
    # Bucket in a subquery and group the outer query by its column: grouping by the
    # expression itself would repeat its bind parameters, which PostgreSQL cannot match
    # against the select list.
    inner = sa.select(_bucket_index(dialect, start, step).label("b"), c.value, *labels).where(
        *where
    )
    sub = inner.subquery()
    keys = [sub.c[g] for g in groups]
    return (
        sa.select(
            *keys,
            sub.c.b,
            sa.func.avg(sub.c.value).label("avg"),
            sa.func.max(sub.c.value).label("max"),
            sa.func.count().label("count"),
            sa.func.sum(sub.c.value).label("sum"),
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
        series.buckets.append(
            Bucket(
                ts=start + int(m["b"]) * step,
                avg=float(m["avg"]),
                max=float(m["max"]),
                count=int(m["count"]),
                sum=float(m["sum"]),
            )
        )
    return builtins.list(out.values())
