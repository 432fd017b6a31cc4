"""Live operational views: ``GET /metrics``, ``GET /admin/v1/health``, ``GET /admin/v1/events``.

Handlers only read the components in the ``LiveBundle``; they hold no state. The events
route is a Server-Sent Events stream that ends when the client goes away (Starlette
cancels the body iterator on ``http.disconnect``), which releases its subscription.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse

from tokenhub.errors import BadRequest
from tokenhub.observe.events import EventBus
from tokenhub.observe.health import HealthTracker
from tokenhub.observe.metrics import Metrics
from tokenhub.observe.prober import ProviderSource, endpoint_key
from tokenhub.types import ProviderConfig

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
MAX_TYPES = 16


@dataclass
class LiveBundle:
    """What the live routes read; the lead builds one in the lifespan."""

    metrics: Metrics
    events: EventBus
    health: HealthTracker
    catalog: ProviderSource  # the routing Catalog
    wall: Callable[[], float] = field(default=time.time)


def metrics_router(get: Callable[[], LiveBundle]) -> APIRouter:
    """``GET /metrics`` in the Prometheus text format (no prefix, no auth of its own)."""
    router = APIRouter(tags=["observability"])

    @router.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        body, content_type = get().metrics.render()
        return Response(body, media_type=content_type)

    return router


def live_router(get: Callable[[], LiveBundle]) -> APIRouter:
    """``GET /admin/v1/health`` and ``GET /admin/v1/events`` (the lead attaches auth)."""
    router = APIRouter(prefix="/admin/v1", tags=["admin"])

    @router.get("/health")
    async def health() -> dict[str, Any]:
        b = get()
        now = b.wall()
        providers = [
            provider_health(b.health, p, now)
            for p in sorted(b.catalog.providers.values(), key=lambda p: p.id)
        ]
        return {"checked_at": _iso(now), "providers": providers}

    @router.get("/events", response_class=StreamingResponse)
    async def events(
        types: str | None = Query(None, max_length=512, description="comma-separated types"),
    ) -> StreamingResponse:
        wanted = _types(types)
        return StreamingResponse(
            get().events.stream(wanted), media_type="text/event-stream", headers=SSE_HEADERS
        )

    return router


def provider_health(tracker: HealthTracker, p: ProviderConfig, now: float) -> dict[str, Any]:
    """One provider's health view, with its endpoints when the tracker knows them."""
    view = {"id": p.id, "type": p.type, "enabled": p.enabled, **key_health(tracker, p.id, now)}
    known = set(tracker.keys())
    endpoints = [
        {"url": url, **key_health(tracker, key, now)}
        for url in p.base_urls
        if (key := endpoint_key(p.id, url)) in known
    ]
    if endpoints:
        view["endpoints"] = endpoints
    return view


def key_health(tracker: HealthTracker, key: str, now: float) -> dict[str, Any]:
    """State, cooldown (remaining and absolute wall-clock end) and statistics of a key."""
    h = tracker.state(key)
    remaining = tracker.cooldown_remaining(key)
    return {
        "state": h.state,
        "available": h.available,
        "cooldown": remaining > 0,
        "cooldown_remaining_s": round(remaining, 3),
        "cooldown_until": _iso(now + remaining) if remaining > 0 else None,
        "cooldown_reason": h.cooldown_reason,
        "requests": h.requests,
        "errors": h.errors,
        "consecutive_errors": h.consecutive_errors,
        "error_rate": round(h.error_rate, 4),
        "latency_ema_ms": None if h.latency_ema_ms is None else round(h.latency_ema_ms, 1),
        "last_error": h.last_error,
        "last_error_class": h.last_error_class,
    }


def _types(raw: str | None) -> frozenset[str] | None:
    if not raw:
        return None
    names = frozenset(t.strip() for t in raw.split(",") if t.strip())
    if not names or len(names) > MAX_TYPES:
        raise BadRequest(f"types: give between 1 and {MAX_TYPES} event types")
    return names


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
