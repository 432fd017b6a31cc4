"""The embedded TSDB: outcome points in, downsampled series out, old points pruned.

The recorder hands batches of :class:`~tokenhub.types.Outcome` to :class:`TSDBSink`,
which turns each outcome that reached a model into one point per metric, rolls the
batch's points up per (metric, model, provider, second) in one pass and writes the
rollups in one statement. Resolution is therefore one second: queries bucket rollups
in SQL (see ``store/tsdb.py``) and refuse steps below 1 s.
Retention (default 7 days) lives in the settings table under ``"tsdb_retention"`` so
every replica prunes to the same horizon; a background task prunes hourly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tokenhub.errors import BadRequest
from tokenhub.store.db import BulkInsert
from tokenhub.store.settings import SettingsRepo
from tokenhub.store.tsdb import (
    GROUP_COLUMNS,
    INSERT_POINTS,
    MIN_STEP_S,
    MetricInfo,
    Point,
    Rollup,
    Series,
    TSDBRepo,
)
from tokenhub.types import Outcome

log = logging.getLogger("tokenhub.tsdb")

METRICS = ("latency_ms", "cost_usd", "tokens_in", "tokens_out", "ttft_ms")
"""The metrics an outcome produces (``ttft_ms`` only when the outcome has one)."""

RETENTION_KEY = "tsdb_retention"
DEFAULT_RETENTION_DAYS = 7
MIN_RETENTION_DAYS, MAX_RETENTION_DAYS = 1, 3650
DEFAULT_WINDOW_S = 3600.0
DEFAULT_STEP_S = 60.0
MAX_BUCKETS = 10_000
_DAY_S = 86_400.0


def outcome_points(outcome: Outcome) -> list[Point]:
    """The points of one outcome, stamped at its start; none when no model was reached."""
    if not outcome.model:
        return []
    values: dict[str, float | None] = {
        "latency_ms": outcome.latency_ms,
        "cost_usd": outcome.cost_usd,
        "tokens_in": outcome.usage.prompt_tokens,
        "tokens_out": outcome.usage.completion_tokens,
        "ttft_ms": outcome.ttft_ms,
    }
    model, provider, ts = outcome.model, outcome.provider or "", outcome.started_at
    return [
        Point(ts, metric, model, provider, float(v))
        for metric, v in values.items()
        if v is not None and math.isfinite(v)
    ]


def outcome_rollups(batch: Sequence[Outcome]) -> list[Rollup]:
    """The points of every outcome in ``batch``, rolled up per series and second.

    Equivalent to ``rollup(p for o in batch for p in outcome_points(o))`` but without
    building a Point per measurement: outcomes are grouped per (model, provider,
    second) with one dictionary lookup each, and every group's count, sum, max and min
    come from the builtins (this is the sink's whole CPU cost).
    """
    groups: dict[tuple[str, str, int], list[list[Any]]] = {}
    floor = math.floor
    for o in batch:
        model = o.model
        if not model:
            continue
        key = (model, o.provider or "", floor(o.started_at))
        columns = groups.get(key)
        if columns is None:
            columns = groups[key] = [[], [], [], [], []]  # in METRICS order
        usage = o.usage
        columns[0].append(o.latency_ms)
        columns[1].append(o.cost_usd)
        columns[2].append(usage.prompt_tokens)
        columns[3].append(usage.completion_tokens)
        if o.ttft_ms is not None:
            columns[4].append(o.ttft_ms)
    rows = []
    for (model, provider, sec), columns in groups.items():
        for metric, values in zip(METRICS, columns, strict=True):
            if values and (None in values or not math.isfinite(sum(values))):
                # Rare: a value that is missing or not finite is not a point.
                values = [v for v in values if v is not None and math.isfinite(v)]
            if values:
                total, hi, lo = float(sum(values)), float(max(values)), float(min(values))
                rows.append(Rollup(sec, metric, model, provider, len(values), total, hi, lo))
    return rows


@dataclass(slots=True)
class QueryResult:
    """A validated query and its series (empty for an unknown metric)."""

    metric: str
    start: float
    end: float
    step: float
    group_by: tuple[str, ...] = ()
    series: list[Series] = field(default_factory=list)


class TSDB:
    """Time-series points for latency, cost, tokens and TTFT per model and provider.

    ``clock`` returns wall-clock epoch seconds (query defaults and the retention
    horizon). ``start()`` loads the retention setting and launches the prune task;
    ``stop()`` ends it and is idempotent. Writes are never buffered here: the recorder
    batches, and each batch is rolled up and written in one insert.
    """

    def __init__(
        self,
        repo: TSDBRepo,
        settings_repo: SettingsRepo,
        *,
        clock: Callable[[], float] = time.time,
        prune_interval_s: float = 3600.0,
        max_buckets: int = MAX_BUCKETS,
    ) -> None:
        self._repo = repo
        self._settings = settings_repo
        self._clock = clock
        self._prune_interval_s = prune_interval_s
        self._max_buckets = max_buckets
        self._retention_days = DEFAULT_RETENTION_DAYS
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def retention_days(self) -> int:
        return self._retention_days

    def now(self) -> float:
        return self._clock()

    def sink(self) -> TSDBSink:
        """A recorder sink writing into this TSDB's store."""
        return TSDBSink(self._repo)

    async def load(self) -> None:
        """Read the retention setting from the store (the default when unset or invalid)."""
        stored = await self._settings.get(RETENTION_KEY)
        days = (stored or {}).get("days")
        if isinstance(days, int) and MIN_RETENTION_DAYS <= days <= MAX_RETENTION_DAYS:
            self._retention_days = days
        else:
            self._retention_days = DEFAULT_RETENTION_DAYS

    async def write(self, points: Sequence[Point]) -> int:
        """Roll ``points`` up and insert them in one batch; returns how many were written."""
        return await self._repo.insert(points)

    async def query(
        self,
        metric: str,
        start: float | None = None,
        end: float | None = None,
        step: float = DEFAULT_STEP_S,
        *,
        model: str | None = None,
        provider: str | None = None,
        group_by: Sequence[str] = (),
    ) -> QueryResult:
        """Downsample ``metric`` over ``[start, end)`` (defaults: the last hour).

        Raises :class:`BadRequest` for a step below 1 s (the storage resolution), an
        empty window, too many buckets or an unknown ``group_by`` label. An unknown
        metric is no error: it simply has no points.
        """
        end = self.now() if end is None else end
        start = end - DEFAULT_WINDOW_S if start is None else start
        groups = _check_query(start, end, step, group_by, self._max_buckets)
        series = await self._repo.query(
            metric, start, end, step, model=model, provider=provider, group_by=groups
        )
        return QueryResult(metric, start, end, step, groups, series)

    async def metrics(self) -> list[MetricInfo]:
        """Every metric with points, and its (model, provider) series."""
        return await self._repo.metrics()

    async def set_retention(self, days: int) -> int:
        """Keep points for ``days`` days (1..3650); takes effect at the next prune."""
        if not MIN_RETENTION_DAYS <= days <= MAX_RETENTION_DAYS:
            raise BadRequest(
                f"retention must be {MIN_RETENTION_DAYS}..{MAX_RETENTION_DAYS} days",
                code="invalid_retention",
            )
        await self._settings.put(RETENTION_KEY, {"days": days})
        self._retention_days = days
        return days

    def horizon(self) -> float:
        """The epoch second before which points are past retention."""
        return self.now() - self._retention_days * _DAY_S

    async def prune(self) -> int:
        """Delete points past retention; returns how many were deleted."""
        # Re-read first: another replica may have changed the retention.
        await self.load()
        return await self._repo.prune(self.horizon())

    async def start(self) -> None:
        """Load the retention and start pruning every ``prune_interval_s`` seconds."""
        if self._task is not None:
            return
        await self.load()
        self._stopping.clear()
        self._task = asyncio.create_task(self._prune_loop(), name="tsdb-prune")

    async def stop(self) -> None:
        """Stop the prune task (idempotent); nothing is buffered, so nothing to flush."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _prune_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                deleted = await self.prune()
                if deleted:
                    log.debug("tsdb pruned %d points", deleted)
            except Exception:
                # A failed prune must not kill the task: the next one catches up.
                log.exception("tsdb prune failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._prune_interval_s)


class TSDBSink:
    """The recorder's batch sink for the TSDB (structurally a ``BatchSink``)."""

    name = "tsdb"

    def __init__(self, repo: TSDBRepo) -> None:
        self._repo = repo

    async def write(self, batch: Sequence[Outcome]) -> None:
        """Write the points of every outcome in ``batch`` as rollups in one insert."""
        await self._repo.insert_rollups(outcome_rollups(batch))

    def rows(self, batch: Sequence[Outcome]) -> list[tuple[BulkInsert, list[Rollup]]]:
        """``write``'s rows, for a ``DatabaseWriter`` to store (``observe.offloop``)."""
        return [(INSERT_POINTS, outcome_rollups(batch))]


def _check_query(
    start: float, end: float, step: float, group_by: Sequence[str], max_buckets: int
) -> tuple[str, ...]:
    if not all(math.isfinite(x) for x in (start, end, step)):
        raise BadRequest("start, end and step must be finite numbers", code="invalid_range")
    if step < MIN_STEP_S:
        # Points are stored as 1-second rollups: a finer step would invent precision.
        raise BadRequest(
            f"step must be at least {MIN_STEP_S:g} s (the TSDB's resolution)",
            code="invalid_step",
        )
    if end <= start:
        raise BadRequest("end must be after start", code="invalid_range")
    buckets = math.ceil((end - start) / step)
    if buckets > max_buckets:
        raise BadRequest(
            f"{buckets} buckets requested; at most {max_buckets} (raise step)",
            code="too_many_buckets",
        )
    unknown = sorted(set(group_by) - set(GROUP_COLUMNS))
    if unknown:
        raise BadRequest(
            f"cannot group by {', '.join(unknown)}; choose from {', '.join(GROUP_COLUMNS)}",
            code="invalid_group_by",
        )
    return tuple(g for g in GROUP_COLUMNS if g in group_by)
