"""Pure pieces of the TSDB: outcome → points, and the API's time and step parsing."""

from __future__ import annotations

import pytest

from tokenhub.api.admin_tsdb import parse_step, parse_time
from tokenhub.errors import BadRequest
from tokenhub.observe.tsdb import METRICS, outcome_points
from tokenhub.store.tsdb import Point
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
