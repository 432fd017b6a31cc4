"""The routing benchmark, shortened: Thompson sampling learns and adapts (seeded)."""

from __future__ import annotations

from bench.routing.simulate import Scenario, adaptation_lag, report, run_benchmark


async def test_thompson_learns_and_leaves_a_degraded_model() -> None:
    """On 2,000 seeded requests thompson's regret is <= 25% of random's and lag <= 300."""
    sc = Scenario(requests=2_000, seed=7, degrade_at=1_000)
    results = {r.name: r for r in await run_benchmark(sc, ("thompson", "random"))}
    thompson, rnd = results["thompson"], results["random"]
    assert thompson.regret <= 0.25 * rnd.regret
    assert thompson.lag is not None and thompson.lag <= 300
    assert thompson.value > rnd.value
    assert "| thompson |" in report(sc, list(results.values()))


def test_adaptation_lag_counts_requests_until_traffic_left() -> None:
    """Lag is where the trailing window's share first falls to a tenth of the share before."""
    before = ["solid-pro"] * 500
    after = ["solid-pro"] * 20 + ["other"] * 100
    assert adaptation_lag(before + after, 500, window=50) == 65  # 5 of 50 left
    assert adaptation_lag(["other"] * 600, 500) == 0
    assert adaptation_lag(["solid-pro"] * 600, 500) is None
