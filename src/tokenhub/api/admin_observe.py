"""Admin observability routes: request logs with their decision traces, rewards, stats.

    GET /admin/v1/logs                  newest first; limit, offset, model, provider,
                                        status (HTTP status, "ok" or "error"), key
    GET /admin/v1/logs/{request_id}     one request with its routing trace and rewards
    GET /admin/v1/rewards               limit, offset, model, provider,
                                        status ("success" or "failure"), key
    GET /admin/v1/stats?window=24h      global, by model, by provider (a leaderboard)

Handlers only translate HTTP to repository and stats calls; authentication is attached
by whoever mounts the router.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from tokenhub.errors import NotFound, Unprocessable
from tokenhub.observe.recorder import Recorder
from tokenhub.observe.stats import DEFAULT_WINDOW, StatsService, parse_window
from tokenhub.store.logs import MICRO, LogFilter, LogRepo

MAX_LIMIT = 1000
_REQUEST_STATUS = r"^(ok|error|[1-5][0-9]{2})$"
_REWARD_STATUS = r"^(success|failure)$"


@dataclass
class ObserveBundle:
    """What the observability routes read: the log repository, stats, the recorder."""

    logs: LogRepo
    stats: StatsService
    recorder: Recorder | None = None


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
Text = Annotated[str | None, Query(min_length=1, max_length=300)]


def observe_router(get: Callable[[], ObserveBundle]) -> APIRouter:
    """The /admin/v1 observability routes, reading their services through ``get``."""
    router = APIRouter(prefix="/admin/v1", tags=["admin", "observe"])
    Bundle = Annotated[ObserveBundle, Depends(get)]

    @router.get("/logs")
    async def list_logs(
        b: Bundle,
        limit: Limit = 50,
        offset: Offset = 0,
        model: Text = None,
        provider: Text = None,
        status: Annotated[str | None, Query(pattern=_REQUEST_STATUS)] = None,
        key: Text = None,
    ) -> dict[str, Any]:
        code: int | str | None = int(status) if status and status.isdigit() else status
        flt = LogFilter(model=model, provider=provider, status=code, key=key)
        rows = await b.logs.list_requests(limit, offset, flt)
        return {"logs": [request_view(r) for r in rows], "limit": limit, "offset": offset}

    @router.get("/logs/{request_id}")
    async def get_log(request_id: str, b: Bundle) -> dict[str, Any]:
        row = await b.logs.get_request(request_id)
        if row is None:
            raise NotFound(f"no request log for {request_id[:200]!r}", code="log_not_found")
        rewards = await b.logs.list_rewards(MAX_LIMIT, 0, request_id=request_id)
        rewards.sort(key=lambda r: r["attempt"])
        return {
            **request_view(row),
            "trace": row["trace"],
            "rewards": [reward_view(r) for r in rewards],
        }

    @router.get("/rewards")
    async def list_rewards(
        b: Bundle,
        limit: Limit = 50,
        offset: Offset = 0,
        model: Text = None,
        provider: Text = None,
        status: Annotated[str | None, Query(pattern=_REWARD_STATUS)] = None,
        key: Text = None,
    ) -> dict[str, Any]:
        flt = LogFilter(model=model, provider=provider, status=status, key=key)
        rows = await b.logs.list_rewards(limit, offset, flt)
        return {"rewards": [reward_view(r) for r in rows], "limit": limit, "offset": offset}

    @router.get("/stats")
    async def stats(
        b: Bundle, window: Annotated[str, Query(max_length=20)] = DEFAULT_WINDOW
    ) -> dict[str, Any]:
        try:
            seconds = parse_window(window)
        except ValueError as exc:
            raise Unprocessable(f"window: {exc}", code="bad_window") from None
        body = await b.stats.stats(seconds)
        body["window"] = window
        if b.recorder is not None:
            body["recorder"] = {
                "queue_depth": b.recorder.queue_depth,
                "dropped": b.recorder.dropped,
                "lost": dict(b.recorder.lost),
            }
        return body

    return router


def request_view(row: dict[str, Any]) -> dict[str, Any]:
    """A request-log row as the API shows it (cost in USD, no internal row id)."""
    return {
        "ts": row["ts"],
        "request_id": row["request_id"],
        "api_key_id": row["api_key_id"],
        "surface": row["surface"],
        "mode": row["mode"],
        "model": row["model"],
        "provider": row["provider"],
        "tokens_in": row["tokens_in"],
        "tokens_out": row["tokens_out"],
        "cost_usd": row["cost_micro_usd"] / MICRO,
        "latency_ms": row["latency_ms"],
        "ttft_ms": row["ttft_ms"],
        "status": row["status"],
        "error_class": row["error_class"],
        "error": row["error"],
        "reason": row["reason"],
        "attempts": row["attempts"],
        "stream": bool(row["stream"]),
    }


def reward_view(row: dict[str, Any]) -> dict[str, Any]:
    """A reward-log row as the API shows it."""
    return {
        "ts": row["ts"],
        "request_id": row["request_id"],
        "attempt": row["attempt"],
        "api_key_id": row["api_key_id"],
        "model": row["model"],
        "provider": row["provider"],
        "mode": row["mode"],
        "token_bucket": row["token_bucket"],
        "latency_budget_ms": row["latency_budget_ms"],
        "budget_usd": row["cost_budget_micro_usd"] / MICRO,
        "latency_ms": row["latency_ms"],
        "cost_usd": row["cost_micro_usd"] / MICRO,
        "success": bool(row["success"]),
        "error_class": row["error_class"],
        "reward": row["reward"],
    }
