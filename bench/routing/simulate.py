"""The routing benchmark: does Thompson sampling learn, and how fast does it adapt?

    python -m bench.routing.simulate --requests 10000 --seed 7 [--out FILE]

Each strategy routes the same seeded request stream through the real ``Catalog``,
``HealthTracker`` and ``RoutingEngine`` over simulated adapters (``bench.routing.world``)
on a simulated clock, so a run is deterministic and never sleeps:

- ``thompson``: mode "thompson" with a real ``Bandit`` fed through the real
  ``BanditSink`` after every request, and client feedback (half the answers are judged,
  by their hidden quality) through ``Bandit.feedback``;
- ``random``: mode "thompson" with a bandit that never learns (every arm samples the
  uniform prior: a uniformly random order);
- one run per fixed scoring profile (cheap, normal, ...);
- ``oracle``: not run; for each request, the best expected value among the models that
  fit it (context and budget), knowing the hidden truth and the degradation.

Reported per strategy: cumulative value, regret (the oracle's expected value minus the
expected value of the model tried first, summed), cost, and adaptation lag: requests
after the degradation until the degraded model's share of first tries, over a trailing
window of 50 requests, has fallen to 10% of its share in the 500 requests before.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from bench.routing.world import (
    DEGRADED_MODEL,
    FEEDBACK_RATE,
    POLICY,
    SimAdapter,
    SimClock,
    SimRequest,
    World,
    catalogue,
    traffic,
)

from tokenhub.errors import TokenHubError
from tokenhub.observe.banditsink import BanditSink
from tokenhub.observe.health import HealthTracker
from tokenhub.observe.logsink import reward, token_bucket
from tokenhub.routing.bandit import Bandit
from tokenhub.routing.catalog import Catalog
from tokenhub.routing.config import MODES, RoutingConfig
from tokenhub.routing.engine import RoutingEngine
from tokenhub.routing.scoring import estimate_cost
from tokenhub.types import ChatRequest, Decision, ModelConfig, Outcome, Policy, ProviderConfig

HALF_LIFE_S = 300.0  # simulated seconds; about 200 requests at the simulated pace
LAG_WINDOW = 50
PROFILES = tuple(m for m in MODES if m != "thompson")


@dataclass
class Result:
    """One strategy's totals over the run."""

    name: str
    value: float = 0.0
    regret: float = 0.0
    cost_usd: float = 0.0
    failed: int = 0
    first: list[str] = field(default_factory=list)  # model tried first, per request
    lag: int | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    requests: int = 10_000
    seed: int = 7
    degrade_at: int | None = None  # default: halfway

    @property
    def degradation(self) -> int:
        return self.requests // 2 if self.degrade_at is None else self.degrade_at


async def _build(world: World, bandit: Bandit | None) -> RoutingEngine:
    catalog = Catalog(lambda cfg: SimAdapter(cfg, world))
    for sim in world.models.values():
        await catalog.set_provider(ProviderConfig(id=sim.config.provider_id, type="sim"))
        catalog.set_model(sim.config)
    health = HealthTracker(clock=world.clock)
    engine = RoutingEngine(
        catalog,
        health,
        RoutingConfig(max_budget_usd=POLICY.max_budget_usd, max_latency_ms=POLICY.max_latency_ms),
        clock=world.clock,
        sleep=world.clock.sleep,
    )
    engine.bandit = bandit
    return engine


def _fits(model: ModelConfig, req: SimRequest) -> bool:
    """Static eligibility, as the engine checks it: context (with headroom) and budget."""
    usable = int(model.max_context_tokens * (1 - RoutingConfig().context_headroom))
    cost = estimate_cost(model, req.input_tokens, req.max_tokens)
    return req.input_tokens + req.max_tokens <= usable and cost <= POLICY.max_budget_usd


def oracle_value(world: World, req: SimRequest) -> float:
    """The best expected value any fitting model offers ``req`` (hidden knowledge)."""
    fits = [s.config for s in world.models.values() if _fits(s.config, req)]
    return max((world.expected_value(m, req) for m in fits), default=0.0)


async def run_strategy(name: str, sc: Scenario, stream: Sequence[SimRequest]) -> Result:
    """Route ``stream`` with strategy ``name``: thompson, random, or a profile's mode."""
    world = World({s.config.id: s for s in catalogue()}, SimClock(), random.Random(sc.seed))
    # The gateway's own weights; only the half-life is scaled to simulated time.
    learner = Bandit(half_life_s=HALF_LIFE_S, clock=world.clock, rng=random.Random(sc.seed + 1))
    bandit = {"thompson": learner, "random": Bandit(rng=random.Random(sc.seed + 2))}.get(name)
    mode = "thompson" if name in ("thompson", "random") else name
    engine = await _build(world, bandit)
    sink = BanditSink(learner, POLICY) if name == "thompson" else None
    feedback_rng = random.Random(sc.seed + 3)
    result = Result(name)
    for req in stream:
        world.degraded = req.index >= sc.degradation
        world.clock.advance(req.gap_s)
        outcome = await _route(engine, req, replace(POLICY, mode=mode), world)
        _account(result, outcome, req, world)
        if sink is not None:
            sink.observe(outcome)
            _client_feedback(learner, outcome, world, feedback_rng)
    result.lag = adaptation_lag(result.first, sc.degradation)
    return result


async def _route(engine: RoutingEngine, req: SimRequest, policy: Policy, world: World) -> Outcome:
    chat = ChatRequest(
        messages=[],
        max_tokens=req.max_tokens,
        estimated_input_tokens=req.input_tokens,
        request_id=f"sim-{req.index}",
    )
    started = world.clock()
    try:
        response, decision = await engine.complete(chat, policy)
    except TokenHubError as err:
        d = err.decision or Decision(mode=policy.mode, policy=policy)
        return Outcome(chat.request_id, "sim", started, err.status, 0.0, decision=d)
    assert decision.model is not None
    return Outcome(
        chat.request_id,
        "sim",
        started,
        200,
        (world.clock() - started) * 1000.0,
        mode=policy.mode,
        model=decision.model.id,
        provider=decision.provider_id,
        usage=response.usage,
        cost_usd=decision.model.cost(response.usage),
        decision=decision,
    )


def _account(result: Result, outcome: Outcome, req: SimRequest, world: World) -> None:
    d = outcome.decision
    first = d.attempts[0].model if d is not None and d.attempts else ""
    result.first.append(first)
    best = oracle_value(world, req)
    chosen = world.models[first].config if first else None
    result.regret += best - (world.expected_value(chosen, req) if chosen else 0.0)
    if outcome.status >= 400 or d is None or outcome.model is None:
        result.failed += 1
        return
    result.cost_usd += outcome.cost_usd
    r = reward(d.attempts[-1], outcome, POLICY)
    quality = world.quality(outcome.model, token_bucket(req.input_tokens))
    result.value += 0.5 * r + 0.5 * quality


def _client_feedback(bandit: Bandit, outcome: Outcome, world: World, rng: random.Random) -> None:
    """Half the answered requests get a judgement around the model's hidden quality."""
    if outcome.model is None or outcome.status >= 400 or rng.random() >= FEEDBACK_RATE:
        return
    bucket = token_bucket(outcome.decision.estimated_tokens if outcome.decision else 0)
    score = min(1.0, max(0.0, rng.gauss(world.quality(outcome.model, bucket), 0.15)))
    bandit.feedback(outcome.model, bucket, score)


def adaptation_lag(first: Sequence[str], degrade_at: int, window: int = LAG_WINDOW) -> int | None:
    """Requests after ``degrade_at`` until the degraded model's trailing-window share of
    first tries is at most 10% of its share before; 0 if it had (almost) none; None if
    it never gets there."""
    before = first[max(0, degrade_at - 500) : degrade_at]
    share = sum(m == DEGRADED_MODEL for m in before) / max(1, len(before))
    if share < 0.05:
        return 0
    hits = 0
    for n, model in enumerate(first[degrade_at:], start=1):
        hits += model == DEGRADED_MODEL
        if n > window:
            hits -= first[degrade_at + n - 1 - window] == DEGRADED_MODEL
        if n >= window and hits / window <= 0.1 * share:
            return n
    return None


async def run_benchmark(sc: Scenario, strategies: Sequence[str] | None = None) -> list[Result]:
    """Run every strategy (default: thompson, random and each profile) on one stream."""
    stream = traffic(sc.requests, sc.seed)
    names = list(strategies or ("thompson", "random", *PROFILES))
    results = [await run_strategy(name, sc, stream) for name in names]
    world = World({s.config.id: s for s in catalogue()}, SimClock(), random.Random(0))
    oracle = Result("oracle")
    for req in stream:
        world.degraded = req.index >= sc.degradation
        oracle.value += oracle_value(world, req)
    return [*results, oracle]


def report(sc: Scenario, results: Sequence[Result]) -> str:
    """The results as a markdown table, with the targets checked."""
    random_regret = next((r.regret for r in results if r.name == "random"), 0.0)
    lines = [
        f"Routing benchmark: {sc.requests} requests, seed {sc.seed}, "
        f"{DEGRADED_MODEL} degrades at request {sc.degradation}.",
        "",
        "| strategy | value | regret | regret vs random | cost USD | failed | lag |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        vs = f"{100 * r.regret / random_regret:.1f}%" if random_regret else "-"
        lag = "-" if r.name == "oracle" else ("never" if r.lag is None else str(r.lag))
        regret = "0" if r.name == "oracle" else f"{r.regret:.1f}"
        lines.append(
            f"| {r.name} | {r.value:.1f} | {regret} | {vs if r.name != 'oracle' else '-'} "
            f"| {r.cost_usd:.4f} | {r.failed} | {lag} |"
        )
    t = next((r for r in results if r.name == "thompson"), None)
    if t is not None and random_regret:
        ok_regret = t.regret <= 0.25 * random_regret
        ok_lag = t.lag is not None and t.lag <= 300
        lines += [
            "",
            f"- thompson regret <= 25% of random: {'yes' if ok_regret else 'NO'} "
            f"({100 * t.regret / random_regret:.1f}%)",
            f"- thompson adaptation lag <= 300 requests: {'yes' if ok_lag else 'NO'} ({t.lag})",
        ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--degrade-at", type=int, default=None)
    parser.add_argument("--out", default=None, help="also write the markdown report here")
    args = parser.parse_args(argv)
    sc = Scenario(args.requests, args.seed, args.degrade_at)
    text = report(sc, asyncio.run(run_benchmark(sc)))
    print(text, end="")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
