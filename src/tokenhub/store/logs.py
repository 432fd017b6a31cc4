"""Request and reward logs: two append-only tables, their repository and stats queries.

Rows arrive in batches from the recorder's ``LogSink`` (one executemany INSERT per
table per batch, both in one transaction) and are read by the admin API. The inserts
go to the driver as plain tuples (``insert_rows``): SQLAlchemy's per-row parameter
processing cost more than the database's own work. Money is
stored as integer micro-dollars; ``ts`` is the request's wall-clock start (epoch
seconds) and is indexed, because every list and every stats window filters on it.

Percentiles are computed in SQL with window functions (``ROW_NUMBER``/``COUNT`` over a
partition), which SQLite (3.25+) and PostgreSQL both support, so only one row per
group leaves the database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from tokenhub.store.db import BulkInsert, Database, json_dumps
from tokenhub.store.tables import JSONType, metadata

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias), not BIGINT.
_RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

request_log = sa.Table(
    "request_log",
    metadata,
    sa.Column("id", _RowId, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False, index=True),
    sa.Column("request_id", sa.String(200), nullable=False, index=True),
    sa.Column("api_key_id", sa.String(200), nullable=True),
    sa.Column("surface", sa.String(50), nullable=False),
    sa.Column("mode", sa.String(50), nullable=False),
    sa.Column("model", sa.String(300), nullable=True),
    sa.Column("provider", sa.String(200), nullable=True),
    sa.Column("tokens_in", sa.Integer, nullable=False),
    sa.Column("tokens_out", sa.Integer, nullable=False),
    sa.Column("cost_micro_usd", sa.BigInteger, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("ttft_ms", sa.Float, nullable=True),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("error_class", sa.String(50), nullable=True),
    sa.Column("error", sa.String(500), nullable=True),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("stream", sa.Boolean, nullable=False),
    sa.Column("trace", JSONType, nullable=True),
)

reward_log = sa.Table(
    "reward_log",
    metadata,
    sa.Column("id", _RowId, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False, index=True),
    sa.Column("request_id", sa.String(200), nullable=False, index=True),
    sa.Column("attempt", sa.Integer, nullable=False),  # 0-based position in the decision
    sa.Column("api_key_id", sa.String(200), nullable=True),
    sa.Column("model", sa.String(300), nullable=False),
    sa.Column("provider", sa.String(200), nullable=False),
    sa.Column("mode", sa.String(50), nullable=False),
    sa.Column("token_bucket", sa.String(10), nullable=False),
    sa.Column("latency_budget_ms", sa.Float, nullable=False),
    sa.Column("cost_budget_micro_usd", sa.BigInteger, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("cost_micro_usd", sa.BigInteger, nullable=False),
    sa.Column("success", sa.Boolean, nullable=False),
    sa.Column("error_class", sa.String(50), nullable=True),
    sa.Column("reward", sa.Float, nullable=False),
)

MICRO = 1_000_000

REQUEST_COLUMNS = tuple(c.name for c in request_log.c if c.name != "id")
"""The order of a request row's values in ``LogRepo.insert_rows``."""
REWARD_COLUMNS = tuple(c.name for c in reward_log.c if c.name != "id")
"""The order of a reward row's values in ``LogRepo.insert_rows``."""
_JSON_COLUMNS = frozenset(c.name for c in request_log.c if isinstance(c.type, sa.JSON))
INSERT_REQUESTS = BulkInsert(request_log, REQUEST_COLUMNS)
INSERT_REWARDS = BulkInsert(reward_log, REWARD_COLUMNS)


def to_micro(usd: float) -> int:
    """USD as integer micro-dollars (rounded to the nearest micro-dollar)."""
    return round(usd * MICRO)


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Filters shared by the request and reward lists; None means "any".

    ``status`` on request rows is an exact HTTP status, or ``"ok"`` (< 400) /
    ``"error"`` (>= 400); on reward rows it is ``"success"`` or ``"failure"``.
    """

    model: str | None = None
    provider: str | None = None
    status: int | str | None = None
    key: str | None = None
    since: float | None = None


@dataclass(frozen=True, slots=True)
class GroupStats:
    """Aggregates of the request log over one group (or all rows when ``group`` is None)."""

    group: str | None
    requests: int
    errors: int
    avg_latency_ms: float
    p95_latency_ms: float
    avg_ttft_ms: float | None
    tokens_in: int
    tokens_out: int
    cost_micro_usd: int


class LogRepo:
    """Append and query the request and reward logs."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert_batch(
        self, requests: Sequence[Mapping[str, Any]], rewards: Sequence[Mapping[str, Any]]
    ) -> None:
        """Insert both kinds of rows in one transaction (one executemany per table).

        Absent keys are NULL; the ``trace`` value is JSON-ready data.
        """
        await self.insert_rows(
            [_request_values(r) for r in requests],
            [tuple(r.get(c) for c in REWARD_COLUMNS) for r in rewards],
        )

    async def insert_rows(
        self, requests: Sequence[Sequence[Any]], rewards: Sequence[Sequence[Any]]
    ) -> None:
        """``insert_batch`` for value tuples in ``REQUEST_COLUMNS``/``REWARD_COLUMNS`` order.

        The fast path: ``trace`` must already be JSON text (``store.db.json_dumps``) or
        None, and the values go to the driver unprocessed.
        """
        if not requests and not rewards:
            return
        async with self._db.engine.begin() as conn:
            await INSERT_REQUESTS(conn, requests)
            await INSERT_REWARDS(conn, rewards)

    async def insert_requests(self, rows: Sequence[Mapping[str, Any]]) -> None:
        await self.insert_batch(rows, ())

    async def insert_rewards(self, rows: Sequence[Mapping[str, Any]]) -> None:
        await self.insert_batch((), rows)

    async def list_requests(
        self, limit: int = 50, offset: int = 0, flt: LogFilter | None = None
    ) -> list[dict[str, Any]]:
        """Newest first, without the trace."""
        cols = [c for c in request_log.c if c.name != "trace"]
        stmt = _filtered(sa.select(*cols), request_log, flt or LogFilter())
        stmt = stmt.order_by(request_log.c.ts.desc(), request_log.c.id.desc())
        return await self._rows(stmt.limit(limit).offset(offset))

    async def get_request(self, request_id: str) -> dict[str, Any] | None:
        """The newest row with ``request_id`` (trace included), or None."""
        stmt = (
            sa.select(request_log)
            .where(request_log.c.request_id == request_id)
            .order_by(request_log.c.id.desc())
            .limit(1)
        )
        rows = await self._rows(stmt)
        return rows[0] if rows else None

    async def list_rewards(
        self,
        limit: int = 50,
        offset: int = 0,
        flt: LogFilter | None = None,
        request_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first; attempts of one request in the order they were made."""
        stmt = _filtered(sa.select(reward_log), reward_log, flt or LogFilter())
        if request_id is not None:
            stmt = stmt.where(reward_log.c.request_id == request_id)
        order = (reward_log.c.ts.desc(), reward_log.c.request_id, reward_log.c.attempt)
        return await self._rows(stmt.order_by(*order).limit(limit).offset(offset))

    async def aggregate(self, since: float, group: str | None = None) -> list[GroupStats]:
        """Totals per ``group`` ("model" or "provider"; None: one global row) since ``since``.

        Rows whose group column is NULL (e.g. no model was chosen) count only globally.
        """
        key = _group_col(group)
        window = request_log.c.ts >= since
        p95 = await self._p95(key, window)
        stmt = sa.select(*_aggregates(key)).where(window)
        if key is not None:
            stmt = stmt.where(key.is_not(None)).group_by(key)
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_group_stats(dict(r._mapping), p95) for r in rows if r._mapping["requests"]]

    async def _p95(self, key: sa.ColumnElement[Any] | None, window: Any) -> dict[Any, float]:
        # Nearest rank: the k-th smallest with k = ceil(0.95 n), in integer arithmetic
        # because SQLite has no portable CEIL.
        part = [key] if key is not None else []
        order = request_log.c.latency_ms
        inner = sa.select(
            (key if key is not None else sa.literal(None)).label("g"),
            order.label("v"),
            sa.func.row_number().over(partition_by=part, order_by=order).label("rn"),
            sa.func.count().over(partition_by=part).label("n"),
        ).where(window)
        if key is not None:
            inner = inner.where(key.is_not(None))
        sub = inner.subquery()
        stmt = sa.select(sub.c.g, sub.c.v).where(sub.c.rn == (sub.c.n * 95 + 99) // 100)
        async with self._db.engine.connect() as conn:
            return {r.g: float(r.v) for r in await conn.execute(stmt)}

    async def _rows(self, stmt: sa.Select[Any]) -> list[dict[str, Any]]:
        async with self._db.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(stmt)]


def _request_values(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(
        (None if row.get(c) is None else json_dumps(row[c])) if c in _JSON_COLUMNS else row.get(c)
        for c in REQUEST_COLUMNS
    )


def _group_col(group: str | None) -> sa.ColumnElement[Any] | None:
    if group is None:
        return None
    if group not in ("model", "provider"):
        raise ValueError(f"cannot group by {group!r}")
    return request_log.c[group]


def _aggregates(key: sa.ColumnElement[Any] | None) -> list[Any]:
    c = request_log.c
    errors = sa.case((c.status >= 400, 1), else_=0)
    return [
        (key if key is not None else sa.literal(None)).label("g"),
        sa.func.count().label("requests"),
        sa.func.coalesce(sa.func.sum(errors), 0).label("errors"),
        sa.func.avg(c.latency_ms).label("avg_latency"),
        sa.func.avg(c.ttft_ms).label("avg_ttft"),
        sa.func.coalesce(sa.func.sum(c.tokens_in), 0).label("tokens_in"),
        sa.func.coalesce(sa.func.sum(c.tokens_out), 0).label("tokens_out"),
        sa.func.coalesce(sa.func.sum(c.cost_micro_usd), 0).label("cost"),
    ]


def _group_stats(row: Mapping[str, Any], p95: Mapping[Any, float]) -> GroupStats:
    # PostgreSQL returns NUMERIC (Decimal) for AVG and SUM(bigint): normalise here.
    ttft = row["avg_ttft"]
    return GroupStats(
        group=row["g"],
        requests=int(row["requests"]),
        errors=int(row["errors"]),
        avg_latency_ms=float(row["avg_latency"] or 0.0),
        p95_latency_ms=p95.get(row["g"], 0.0),
        avg_ttft_ms=None if ttft is None else float(ttft),
        tokens_in=int(row["tokens_in"]),
        tokens_out=int(row["tokens_out"]),
        cost_micro_usd=int(row["cost"]),
    )


def _filtered(stmt: sa.Select[Any], table: sa.Table, flt: LogFilter) -> sa.Select[Any]:
    c = table.c
    if flt.model is not None:
        stmt = stmt.where(c.model == flt.model)
    if flt.provider is not None:
        stmt = stmt.where(c.provider == flt.provider)
    if flt.key is not None:
        stmt = stmt.where(c.api_key_id == flt.key)
    if flt.since is not None:
        stmt = stmt.where(c.ts >= flt.since)
    if flt.status is not None:
        stmt = stmt.where(_status_clause(table, flt.status))
    return stmt


def _status_clause(table: sa.Table, status: int | str) -> sa.ColumnElement[bool]:
    if table is reward_log:
        if status not in ("success", "failure"):
            raise ValueError("reward status must be 'success' or 'failure'")
        return table.c.success == (status == "success")
    if isinstance(status, int):
        return table.c.status == status
    if status == "ok":
        return table.c.status < 400
    if status == "error":
        return table.c.status >= 400
    raise ValueError("status must be an HTTP status, 'ok' or 'error'")
