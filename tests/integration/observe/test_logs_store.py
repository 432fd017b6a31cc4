"""LogRepo and LogSink on SQLite and PostgreSQL: inserts, filters, traces, recorder drain."""

from __future__ import annotations

import sqlalchemy as sa

from tokenhub.observe.logsink import LogSink, decision_trace
from tokenhub.observe.recorder import Recorder
from tokenhub.store.db import SQLITE_ROWS_PER_INSERT, Database
from tokenhub.store.logs import LogFilter, LogRepo
from tokenhub.types import Attempt, Decision, ErrorClass, ModelConfig, Outcome, Policy, Usage


def trace_decision() -> Decision:
    return Decision(
        model=ModelConfig("m2", "p2"),
        provider_id="p2",
        reason="failover-rate_limited",
        estimated_tokens=1200,
        mode="fast",
        ranked=[("m1", 0.8), ("m2", 0.55)],
        excluded={"m3": "provider p3 unavailable (rate limited (429)), 30.0s left"},
        cooldowns=[{"provider": "p3", "reason": "rate limited (429)", "remaining_s": 30.0}],
        attempts=[
            Attempt("m1", "p1", ErrorClass.RATE_LIMITED, 429, "slow down", 12.0),
            Attempt("m2", "p2", latency_ms=210.0),
        ],
    )


def make(
    i: int,
    *,
    model: str = "m1",
    provider: str = "p1",
    status: int = 200,
    key: str | None = "k1",
    decision: Decision | None = None,
) -> Outcome:
    return Outcome(
        request_id=f"req-{i}",
        surface="openai",
        started_at=1000.0 + i,
        status=status,
        latency_ms=100.0 + i,
        model=model,
        provider=provider,
        api_key_id=key,
        usage=Usage(10, 5),
        cost_usd=0.000123,
        error_class=None if status < 400 else "transient",
        decision=decision or Decision(attempts=[Attempt(model, provider, latency_ms=90.0)]),
    )


async def test_trace_round_trips_through_the_store(db: Database) -> None:
    """The decision trace written with a request reads back identical, with every field."""
    repo = LogRepo(db)
    o = make(1, model="m2", provider="p2", decision=trace_decision())
    await LogSink(repo).write([o])
    row = await repo.get_request("req-1")
    assert row is not None
    assert row["trace"] == decision_trace(trace_decision())
    assert row["trace"]["cooldowns"] == [
        {"provider": "p3", "reason": "rate limited (429)", "remaining_s": 30.0}
    ]
    assert (row["model"], row["attempts"], row["cost_micro_usd"], row["stream"]) == (
        "m2",
        2,
        123,
        False,
    )
    rewards = await repo.list_rewards(request_id="req-1")
    assert sorted((r["attempt"], r["success"], r["error_class"]) for r in rewards) == [
        (0, False, "rate_limited"),
        (1, True, None),
    ]


async def test_unknown_request_id_is_none(db: Database) -> None:
    """get_request of an id never logged returns None."""
    assert await LogRepo(db).get_request("nope") is None


async def test_list_requests_filters_and_pages(db: Database) -> None:
    """Filters by model, provider, status (exact, ok, error) and key; newest first; paged."""
    repo = LogRepo(db)
    batch = [
        make(1),
        make(2, model="m2", provider="p2"),
        make(3, status=502),
        make(4, key="k2"),
        make(5, status=429, key="k2"),
    ]
    await LogSink(repo).write(batch)

    async def ids(**kw: object) -> list[str]:
        return [r["request_id"] for r in await repo.list_requests(flt=LogFilter(**kw))]  # type: ignore[arg-type]

    assert await ids() == ["req-5", "req-4", "req-3", "req-2", "req-1"]
    assert await ids(model="m2") == ["req-2"]
    assert await ids(provider="p1") == ["req-5", "req-4", "req-3", "req-1"]
    assert await ids(status=502) == ["req-3"]
    assert await ids(status="error") == ["req-5", "req-3"]
    assert await ids(status="ok", key="k2") == ["req-4"]
    assert await ids(since=1004.0) == ["req-5", "req-4"]
    page = await repo.list_requests(limit=2, offset=1)
    assert [r["request_id"] for r in page] == ["req-4", "req-3"]
    assert "trace" not in page[0]


async def test_list_rewards_filters(db: Database) -> None:
    """Reward rows filter by model, provider, success/failure and key."""
    repo = LogRepo(db)
    await LogSink(repo).write(
        [make(1, key="k9", model="m2", provider="p2", decision=trace_decision()), make(2)]
    )
    every = await repo.list_rewards()
    assert len(every) == 3
    failed = await repo.list_rewards(flt=LogFilter(status="failure"))
    assert [(r["request_id"], r["model"]) for r in failed] == [("req-1", "m1")]
    assert [r["request_id"] for r in await repo.list_rewards(flt=LogFilter(key="k9"))] == [
        "req-1",
        "req-1",
    ]
    only_p2 = await repo.list_rewards(flt=LogFilter(provider="p2", status="success"))
    assert [(r["model"], r["reward"] > 0.4) for r in only_p2] == [("m2", True)]
    assert [r["request_id"] for r in await repo.list_rewards(flt=LogFilter(model="m1"))] == [
        "req-2",
        "req-1",
    ]


async def test_one_executemany_per_table_per_batch(db: Database) -> None:
    """A batch of 256 outcomes costs one INSERT statement per table (SQLite: one
    multi-row statement of SQLITE_ROWS_PER_INSERT rows; PostgreSQL: one executemany)."""
    statements: list[str] = []

    def count(conn: object, cursor: object, stmt: str, *args: object) -> None:
        if stmt.lstrip().upper().startswith("INSERT"):
            statements.append(stmt.split("(")[0])

    sa.event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        await LogSink(LogRepo(db)).write([make(i) for i in range(SQLITE_ROWS_PER_INSERT)])
    finally:
        sa.event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    assert len(statements) == 2
    assert len(await LogRepo(db).list_requests(limit=1000)) == SQLITE_ROWS_PER_INSERT


async def test_recorder_stop_loses_no_record(db: Database) -> None:
    """Record N outcomes, stop the recorder: the request log holds exactly N rows."""
    repo = LogRepo(db)
    rec = Recorder([LogSink(repo, default_policy=Policy())], batch_size=64, flush_interval_s=5)
    await rec.start()
    n = 500
    for i in range(n):
        rec.record(make(i))
    await rec.stop()
    rows = await repo.list_requests(limit=1000)
    assert sorted(r["request_id"] for r in rows) == sorted(f"req-{i}" for i in range(n))
    assert len(await repo.list_rewards(limit=1000)) == n
    assert rec.dropped == 0
