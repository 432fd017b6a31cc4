"""Admin API for the embedded TSDB (`/admin/v1/tsdb/*`): metrics, queries, retention.

Handlers translate HTTP to :class:`~tokenhub.observe.tsdb.TSDB` calls; validation of the
query window lives there. Times in queries are epoch seconds or ISO-8601 (naive means
UTC); a step is seconds, optionally suffixed ``s``, ``m``, ``h`` or ``d``. The TSDB
stores 1-second rollups, so its resolution is one second: a step below ``1s`` is refused
with 400 ``invalid_step`` rather than silently clamped.
"""

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from tokenhub.errors import BadRequest
from tokenhub.observe.tsdb import (
    DEFAULT_STEP_S,
    MAX_RETENTION_DAYS,
    MIN_RETENTION_DAYS,
    TSDB,
    QueryResult,
)
from tokenhub.store.tsdb import MetricInfo, Series

_STEP_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}


class RetentionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: int = Field(ge=MIN_RETENTION_DAYS, le=MAX_RETENTION_DAYS, strict=True)


def parse_time(raw: str, name: str) -> float:
    """Epoch seconds from ``raw``: a number, or an ISO-8601 timestamp (naive = UTC)."""
    try:
        value = float(raw)
    except ValueError:
        value = _parse_iso(raw, name)
    if not math.isfinite(value):
        raise BadRequest(f"{name}: not a finite time", code="invalid_time")
    return value


def _parse_iso(raw: str, name: str) -> float:
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise BadRequest(
            f"{name}: expected epoch seconds or an ISO-8601 time", code="invalid_time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_step(raw: str) -> float:
    """Seconds from ``"90"``, ``"1.5"``, ``"30s"``, ``"5m"``, ``"1h"`` or ``"1d"``.

    Only the syntax is checked here; the TSDB refuses steps below 1 s.
    """
    text = raw.strip().lower()
    scale = _STEP_UNITS.get(text[-1:])
    number = text[:-1] if scale is not None else text
    try:
        value = float(number) * (scale or 1.0)
    except ValueError:
        raise BadRequest(
            "step: expected seconds, or a number with s/m/h/d", code="invalid_step"
        ) from None
    return value


def series_view(s: Series) -> dict[str, Any]:
    points = [
        {"ts": b.ts, "avg": b.avg, "max": b.max, "count": b.count, "sum": b.sum} for b in s.buckets
    ]
    return {"model": s.model, "provider": s.provider, "points": points}


def query_view(r: QueryResult) -> dict[str, Any]:
    return {
        "metric": r.metric,
        "start": r.start,
        "end": r.end,
        "step": r.step,
        "group_by": list(r.group_by),
        "series": [series_view(s) for s in r.series],
    }


def metric_view(m: MetricInfo) -> dict[str, Any]:
    series = [{"model": s.model, "provider": s.provider, "points": s.points} for s in m.series]
    return {"name": m.name, "points": m.points, "series": series}


def _group_by(raw: str | None) -> list[str]:
    return [part.strip() for part in (raw or "").split(",") if part.strip()]


def tsdb_router(get: Callable[[], TSDB]) -> APIRouter:
    """The /admin/v1/tsdb routes over the TSDB that ``get`` returns (no guards here)."""
    router = APIRouter(prefix="/admin/v1", tags=["admin", "tsdb"])
    DB = Annotated[TSDB, Depends(get)]
    Text = Annotated[str | None, Query(max_length=300)]

    @router.get("/tsdb/metrics")
    async def list_metrics(db: DB) -> dict[str, Any]:
        infos = await db.metrics()
        return {"metrics": [metric_view(m) for m in infos], "retention_days": db.retention_days}

    @router.get("/tsdb/query")
    async def query(
        db: DB,
        metric: Annotated[str, Query(min_length=1, max_length=64)],
        start: Text = None,
        end: Text = None,
        step: Text = None,
        model: Text = None,
        provider: Text = None,
        group_by: Text = None,
    ) -> dict[str, Any]:
        result = await db.query(
            metric,
            None if start is None else parse_time(start, "start"),
            None if end is None else parse_time(end, "end"),
            DEFAULT_STEP_S if step is None else parse_step(step),
            model=model,
            provider=provider,
            group_by=_group_by(group_by),
        )
        return query_view(result)

    @router.get("/tsdb/retention")
    async def get_retention(db: DB) -> dict[str, Any]:
        return {"days": db.retention_days}

    @router.put("/tsdb/retention")
    async def put_retention(body: RetentionIn, db: DB) -> dict[str, Any]:
        return {"days": await db.set_retention(body.days)}

    @router.post("/tsdb/prune")
    async def prune(db: DB) -> dict[str, Any]:
        return {"deleted": await db.prune()}

    return router
