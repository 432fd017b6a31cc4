"""Stats over a window: numbers against hand-computed values on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tokenhub.observe.stats import StatsService, parse_window
from tokenhub.store.db import Database
from tokenhub.store.logs import LogRepo

NOW = 10_000.0


@pytest.fixture
async def repo(db: Database) -> LogRepo:
    """A LogRepo over a migrated database holding the hand-computed data set."""
    r = LogRepo(db)
    await r.insert_requests(data_set())
    return r


def row(
    ts: float, model: str | None, provider: str | None, latency: float, **kw: Any
) -> dict[str, Any]:
    base = {
        "ts": ts,
        "request_id": f"r{ts}-{latency}",
        "api_key_id": "k",
        "surface": "openai",
        "mode": "normal",
        "model": model,
        "provider": provider,
        "tokens_in": 0,
        "tokens_out": 0,
        "cost_micro_usd": 0,
        "latency_ms": latency,
        "ttft_ms": None,
        "status": 200,
        "error_class": None,
        "error": None,
        "reason": "",
        "attempts": 1,
        "stream": False,
        "trace": None,
    }
    return {**base, **kw}


def data_set() -> list[dict[str, Any]]:
    """Model a (p1): latencies 10..200, two 502s; b (p1): 5, 7, 300 streamed; c (p2): one
    429; one 400 with no model; and one old row outside every window but 7d."""
    now = NOW - 60
    rows = [
        row(
            now,
            "a",
            "p1",
            10.0 * i,
            tokens_in=100,
            tokens_out=10,
            cost_micro_usd=1000,
            status=502 if i in (5, 6) else 200,
        )
        for i in range(1, 21)
    ]
    rows += [
        row(now, "b", "p1", v, tokens_in=50, tokens_out=5, cost_micro_usd=500, ttft_ms=30.0)
        for v in (5.0, 7.0, 300.0)
    ]
    rows.append(row(now, "c", "p2", 42.0, status=429))
    rows.append(row(now, None, None, 1.0, status=400))
    rows.append(row(NOW - 2 * 86400, "a", "p1", 9999.0))
    return rows


async def test_global_stats_match_hand_computed_values(repo: LogRepo) -> None:
    """25 requests in the last hour: 4 errors, avg 98.2 ms, nearest-rank p95 = 200 ms."""
    s = await StatsService(repo, clock=lambda: NOW).stats(3600)
    assert (s["since"], s["until"], s["window_s"]) == (NOW - 3600, NOW, 3600)
    g = s["global"]
    assert (g["requests"], g["errors"], g["error_rate"]) == (25, 4, 0.16)
    assert g["avg_latency_ms"] == pytest.approx(2455 / 25)
    assert g["p95_latency_ms"] == 200.0
    assert (g["tokens_in"], g["tokens_out"], g["tokens"]) == (2150, 215, 2365)
    assert g["cost_usd"] == pytest.approx(0.0215)
    assert g["avg_ttft_ms"] == 30.0


async def test_stats_by_model_form_a_leaderboard(repo: LogRepo) -> None:
    """Per model, busiest first; the no-model request counts only globally."""
    s = await StatsService(repo, clock=lambda: NOW).stats(3600)
    by = {m["model"]: m for m in s["by_model"]}
    assert [m["model"] for m in s["by_model"]] == ["a", "b", "c"]
    a, b, c = by["a"], by["b"], by["c"]
    assert (a["requests"], a["errors"], a["error_rate"], a["p95_latency_ms"]) == (20, 2, 0.1, 190.0)
    assert a["avg_latency_ms"] == 105.0 and a["avg_ttft_ms"] is None
    assert a["cost_usd"] == pytest.approx(0.02) and a["tokens"] == 2200
    assert (b["requests"], b["errors"], b["p95_latency_ms"], b["avg_ttft_ms"]) == (
        3,
        0,
        300.0,
        30.0,
    )
    assert b["avg_latency_ms"] == 104.0
    assert (c["requests"], c["errors"], c["error_rate"], c["p95_latency_ms"]) == (1, 1, 1.0, 42.0)


async def test_stats_by_provider(repo: LogRepo) -> None:
    """Per provider: p1 pools a and b (p95 = 22nd of 23 = 200 ms)."""
    s = await StatsService(repo, clock=lambda: NOW).stats(3600)
    by = {p["provider"]: p for p in s["by_provider"]}
    assert set(by) == {"p1", "p2"}
    p1 = by["p1"]
    assert (p1["requests"], p1["errors"], p1["p95_latency_ms"]) == (23, 2, 200.0)
    assert p1["avg_latency_ms"] == pytest.approx(2412 / 23, abs=1e-3)
    assert by["p2"]["requests"] == 1


async def test_window_selects_rows(repo: LogRepo) -> None:
    """A 7-day window takes in the two-day-old row; a 30 s window sees nothing."""
    svc = StatsService(repo, clock=lambda: NOW)
    week = await svc.stats(parse_window("7d"))
    assert week["global"]["requests"] == 26
    assert week["global"]["p95_latency_ms"] == 300.0
    empty = await svc.stats(30)
    assert empty["global"]["requests"] == 0 and empty["global"]["error_rate"] == 0.0
    assert empty["by_model"] == [] and empty["by_provider"] == []


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("3600", 3600),
        ("90s", 90),
        ("15m", 900),
        ("1h", 3600),
        ("24h", 86400),
        ("7d", 604800),
        ("2W", 1209600),
    ],
)
def test_parse_window_accepts_units(text: str, seconds: int) -> None:
    """Windows are seconds or a count with s, m, h, d or w."""
    assert parse_window(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-1h", "1y", "1.5h", "h", "400d", "1h1m"])
def test_parse_window_refuses_nonsense(text: str) -> None:
    """Zero, negatives, fractions, unknown units and more than a year are refused."""
    with pytest.raises(ValueError):
        parse_window(text)
