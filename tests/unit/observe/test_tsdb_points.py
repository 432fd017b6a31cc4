"""Pure pieces of the TSDB: outcome → points → rollups, and the API's time/step parsing."""

from __future__ import annotations

import pytest

from tokenhub.api.admin_tsdb import parse_step, parse_time
from tokenhub.errors import BadRequest
from tokenhub.observe.tsdb import METRICS, outcome_points, outcome_rollups
from tokenhub.store.tsdb import Point, Rollup, rollup
from tokenhub.types import Outcome, Usage


def _outcome(**kw: object) -> Outcome:
    base: dict[str, object] = {
        "request_id": "r1",
        "surface": "anthropic",
        "started_at": 1234.5,
        "status": 200,
        "latency_ms": 80.0,
        "model": "claude-x",
        "provider": "anthropic",
        "usage": Usage(prompt_tokens=3, completion_tokens=4),
        "cost_usd": 0.01,
    }
    base.update(kw)
    return Outcome(**base)  # type: ignore[arg-type]


def test_streamed_outcome_gives_every_metric_at_started_at() -> None:
    """An outcome with a TTFT yields the five metrics, labelled and stamped at started_at."""
    points = outcome_points(_outcome(ttft_ms=12.0))
    assert points == [
        Point(1234.5, "latency_ms", "claude-x", "anthropic", 80.0),
        Point(1234.5, "cost_usd", "claude-x", "anthropic", 0.01),
        Point(1234.5, "tokens_in", "claude-x", "anthropic", 3.0),
        Point(1234.5, "tokens_out", "claude-x", "anthropic", 4.0),
        Point(1234.5, "ttft_ms", "claude-x", "anthropic", 12.0),
    ]
    assert tuple(p.metric for p in points) == METRICS


def test_outcome_without_ttft_has_no_ttft_point() -> None:
    """A non-streamed outcome gives four points and no ttft_ms."""
    assert "ttft_ms" not in {p.metric for p in outcome_points(_outcome())}


def test_outcome_without_model_gives_nothing() -> None:
    """Requests refused before routing (no model) leave no points."""
    assert outcome_points(_outcome(model=None, provider=None, status=401)) == []


def test_non_finite_values_are_dropped() -> None:
    """A NaN or infinite measurement is skipped rather than stored."""
    points = outcome_points(_outcome(latency_ms=float("nan"), cost_usd=float("inf")))
    assert {p.metric for p in points} == {"tokens_in", "tokens_out"}


def test_outcome_rollups_group_by_series_and_whole_second() -> None:
    """A batch rolls up into (count, sum, max, min) per metric, model, provider, second."""
    batch = [
        _outcome(started_at=50.9, latency_ms=10.0, cost_usd=None),
        _outcome(started_at=50.0, latency_ms=30.0, cost_usd=None),
        _outcome(started_at=50.5, latency_ms=20.0, cost_usd=None, provider=None),
        _outcome(started_at=51.0, latency_ms=5.0, cost_usd=float("nan")),
        _outcome(started_at=50.2, model=None),
    ]
    rows = {(r.metric, r.ts, r.provider): r for r in outcome_rollups(batch)}
    assert rows[("latency_ms", 50, "anthropic")] == Rollup(
        50, "latency_ms", "claude-x", "anthropic", 2, 40.0, 30.0, 10.0
    )
    assert rows[("latency_ms", 50, "")].points == 1
    assert rows[("tokens_in", 50, "anthropic")] == Rollup(
        50, "tokens_in", "claude-x", "anthropic", 2, 6.0, 3.0, 3.0
    )
    assert rows[("latency_ms", 51, "anthropic")].sum == 5.0
    assert not any(r.metric == "cost_usd" for r in rows.values())
    assert len(rows) == 3 * 3  # latency, tokens in/out x (50 p, 50 '', 51 p)


def test_outcome_rollups_equal_rolled_up_points() -> None:
    """The sink's fast path gives exactly the rollup of outcome_points."""
    batch = [
        _outcome(started_at=7.0 + i / 3, ttft_ms=float(i), latency_ms=i * 1.5) for i in range(9)
    ]
    points = [p for o in batch for p in outcome_points(o)]
    assert sorted(outcome_rollups(batch)) == sorted(rollup(points))


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("1700000000", 1_700_000_000.0),
        ("1700000000.25", 1_700_000_000.25),
        ("2023-11-14T22:13:20Z", 1_700_000_000.0),
        ("2023-11-14T22:13:20+00:00", 1_700_000_000.0),
        ("2023-11-14T23:13:20+01:00", 1_700_000_000.0),
        ("2023-11-14T22:13:20", 1_700_000_000.0),
    ],
)
def test_parse_time_accepts_epoch_and_iso(raw: str, want: float) -> None:
    """Epoch seconds and ISO-8601 (naive read as UTC) give the same instant."""
    assert parse_time(raw, "start") == want


@pytest.mark.parametrize("raw", ["yesterday", "", "inf", "nan", "2023-13-40"])
def test_parse_time_refuses_garbage(raw: str) -> None:
    """Anything else is a BadRequest naming the parameter."""
    with pytest.raises(BadRequest, match="start"):
        parse_time(raw, "start")


@pytest.mark.parametrize(
    ("raw", "want"),
    [("60", 60.0), ("1.5", 1.5), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("1D", 86400.0)],
)
def test_parse_step_units(raw: str, want: float) -> None:
    """Steps are seconds, with optional s/m/h/d suffixes."""
    assert parse_step(raw) == want


@pytest.mark.parametrize("raw", ["", "m", "5 minutes", "abc"])
def test_parse_step_refuses_garbage(raw: str) -> None:
    """An unreadable step is a BadRequest (range checks happen in the TSDB)."""
    with pytest.raises(BadRequest):
        parse_step(raw)
