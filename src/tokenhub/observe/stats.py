"""Traffic statistics over a time window, built from SQL aggregates of the request log.

The same numbers serve ``GET /admin/v1/stats`` and the model leaderboard: global
totals, one entry per model (busiest first) and one per provider.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from tokenhub.store.logs import MICRO, GroupStats, LogRepo

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_WINDOW = re.compile(r"^(?P<n>\d{1,9})(?P<unit>[smhdw]?)$")
MAX_WINDOW_S = 366 * 86400
DEFAULT_WINDOW = "24h"


def parse_window(text: str) -> int:
    """Seconds in ``"3600"``, ``"90s"``, ``"15m"``, ``"1h"``, ``"24h"``, ``"7d"`` or ``"2w"``.

    Raises ``ValueError`` for anything else, zero, or more than a year.
    """
    m = _WINDOW.match(text.strip().lower())
    if m is None:
        raise ValueError("window must be seconds or a number with s, m, h, d or w")
    seconds = int(m["n"]) * _UNITS[m["unit"]]
    if not 0 < seconds <= MAX_WINDOW_S:
        raise ValueError(f"window must be between 1 second and {MAX_WINDOW_S} seconds")
    return seconds


def totals_view(g: GroupStats) -> dict[str, Any]:
    """One group's numbers as the API shows them (cost in USD, rates as fractions)."""
    return {
        "requests": g.requests,
        "errors": g.errors,
        "error_rate": round(g.errors / g.requests, 6) if g.requests else 0.0,
        "avg_latency_ms": round(g.avg_latency_ms, 3),
        "p95_latency_ms": round(g.p95_latency_ms, 3),
        "avg_ttft_ms": None if g.avg_ttft_ms is None else round(g.avg_ttft_ms, 3),
        "tokens_in": g.tokens_in,
        "tokens_out": g.tokens_out,
        "tokens": g.tokens_in + g.tokens_out,
        "cost_usd": g.cost_micro_usd / MICRO,
    }


_EMPTY = GroupStats(None, 0, 0, 0.0, 0.0, None, 0, 0, 0)


class StatsService:
    """Answers "how is traffic doing" for a window ending now.

    ``clock`` returns wall-clock epoch seconds (the request log's ``ts`` scale).
    """

    def __init__(self, repo: LogRepo, clock: Callable[[], float] = time.time) -> None:
        self._repo = repo
        self._clock = clock

    async def stats(self, window_s: float) -> dict[str, Any]:
        """Global, per-model and per-provider totals over the last ``window_s`` seconds."""
        until = self._clock()
        since = until - window_s
        overall = await self._repo.aggregate(since)
        by_model = await self._repo.aggregate(since, "model")
        by_provider = await self._repo.aggregate(since, "provider")
        return {
            "window_s": window_s,
            "since": since,
            "until": until,
            "global": totals_view(overall[0] if overall else _EMPTY),
            "by_model": _ranked("model", by_model),
            "by_provider": _ranked("provider", by_provider),
        }


def _ranked(label: str, groups: list[GroupStats]) -> list[dict[str, Any]]:
    # Busiest first; ties by name so the order is stable between calls.
    ordered = sorted(groups, key=lambda g: (-g.requests, str(g.group)))
    return [{label: g.group, **totals_view(g)} for g in ordered]
