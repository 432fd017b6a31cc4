"""The simulated world of the routing benchmark: hidden model behaviour and traffic.

Six models with hidden per-bucket success probability, answer quality, latency and
prices; a seeded request stream with a realistic token mix; and ``SimAdapter``, an
``Adapter`` that answers from the hidden truth, advancing an injected clock by each
call's latency instead of sleeping. Halfway through (by default) ``solid-pro`` degrades:
its error rate and latency jump.

The value of one request (what every strategy is judged by) is::

    failed request    0
    answered request  0.5 * reward + 0.5 * quality

where ``reward`` is the gateway's own attempt reward (``observe.logsink.reward``:
success, cost and latency against the request's budgets) and ``quality`` is the hidden
quality of the answering model, which the gateway only learns through client feedback.
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from tokenhub.errors import ProviderError
from tokenhub.observe.logsink import reward, token_bucket
from tokenhub.types import (
    Attempt,
    ChatRequest,
    ChatResponse,
    Chunk,
    Dialect,
    ErrorClass,
    ModelConfig,
    Outcome,
    Policy,
    ProviderConfig,
    Target,
    Usage,
)

POLICY = Policy(mode="thompson", max_budget_usd=0.05, max_latency_ms=8000)
DEGRADED_MODEL = "solid-pro"
FEEDBACK_RATE = 0.5  # share of answered requests the client judges


@dataclass(frozen=True, slots=True)
class Hidden:
    """What only the simulation knows about a model."""

    success: float  # probability one call succeeds
    quality: dict[str, float]  # mean answer quality per token bucket
    latency_ms: float  # mean latency of a small request
    degraded_success: float | None = None  # after the degradation point
    degraded_latency_x: float = 1.0


@dataclass(frozen=True, slots=True)
class SimModel:
    config: ModelConfig
    hidden: Hidden


def _model(mid: str, weight: int, ctx: int, price: tuple[float, float], h: Hidden) -> SimModel:
    cfg = ModelConfig(
        id=mid,
        provider_id=f"{mid}-provider",
        weight=weight,
        max_context_tokens=ctx,
        input_per_1k=price[0],
        output_per_1k=price[1],
        labels={"latency_ms": h.latency_ms},
    )
    return SimModel(cfg, h)


def catalogue() -> list[SimModel]:
    """The six models, with the hidden truth the gateway has to discover."""
    q = lambda s, m, lg: {"small": s, "medium": m, "large": lg}  # noqa: E731
    return [
        _model("budget-7b", 3, 8_192, (0.0001, 0.0002), Hidden(0.8, q(0.35, 0.25, 0.15), 300)),
        _model("swift-mini", 5, 16_384, (0.00015, 0.0006), Hidden(0.97, q(0.6, 0.5, 0.4), 450)),
        _model("flaky-fast", 6, 32_768, (0.0003, 0.0006), Hidden(0.65, q(0.7, 0.65, 0.55), 350)),
        _model(
            DEGRADED_MODEL,
            8,
            131_072,
            (0.0008, 0.0016),
            Hidden(0.99, q(0.9, 0.88, 0.85), 800, degraded_success=0.2, degraded_latency_x=4.0),
        ),
        _model("steady-mid", 7, 65_536, (0.001, 0.002), Hidden(0.98, q(0.8, 0.78, 0.75), 1100)),
        _model("atlas-large", 10, 200_000, (0.01, 0.03), Hidden(0.995, q(0.93, 0.92, 0.9), 2600)),
    ]


@dataclass(frozen=True, slots=True)
class SimRequest:
    index: int
    input_tokens: int
    max_tokens: int
    gap_s: float  # time since the previous request arrived


def traffic(n: int, seed: int) -> list[SimRequest]:
    """``n`` requests: ~60% small, ~30% medium, ~10% large prompts (log-uniform within)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        u = rng.random()
        lo, hi = (50, 999) if u < 0.6 else (1_000, 10_000) if u < 0.9 else (10_001, 60_000)
        tokens = int(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        out.append(SimRequest(i, tokens, rng.choice((128, 256, 512)), rng.expovariate(2.0)))
    return out


class SimClock:
    """Simulated wall-clock seconds; moved by arrivals and by upstream latency."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class World:
    """The hidden truth, the clock and the dice of one strategy's run."""

    models: dict[str, SimModel]
    clock: SimClock
    rng: random.Random
    degraded: bool = False
    calls: dict[str, int] = field(default_factory=dict)

    def success_p(self, model_id: str) -> float:
        h = self.models[model_id].hidden
        if self.degraded and h.degraded_success is not None:
            return h.degraded_success
        return h.success

    def mean_latency_ms(self, model_id: str, input_tokens: int) -> float:
        h = self.models[model_id].hidden
        slow = h.degraded_latency_x if self.degraded else 1.0
        return h.latency_ms * slow * (1.0 + input_tokens / 20_000)

    def quality(self, model_id: str, bucket: str) -> float:
        return self.models[model_id].hidden.quality[bucket]

    def expected_value(self, model: ModelConfig, req: SimRequest) -> float:
        """The request value ``model`` is expected to give (the oracle's yardstick)."""
        out = int(req.max_tokens * 0.6)
        usage = Usage(req.input_tokens, out)
        latency = self.mean_latency_ms(model.id, req.input_tokens)
        probe = Outcome("ev", "sim", 0.0, 200, latency, cost_usd=model.cost(usage))
        r = reward(Attempt(model.id, model.provider_id, latency_ms=latency), probe, POLICY)
        q = self.quality(model.id, token_bucket(req.input_tokens))
        return self.success_p(model.id) * (0.5 * r + 0.5 * q)


class SimAdapter:
    """An ``Adapter`` answering from the hidden truth of ``world``."""

    dialect = Dialect.NONE

    def __init__(self, config: ProviderConfig, world: World) -> None:
        self.config = config
        self.world = world

    async def complete(self, req: ChatRequest, target: Target) -> ChatResponse:
        w, mid = self.world, target.model.id
        tokens = req.estimated_input_tokens or 0
        w.calls[mid] = w.calls.get(mid, 0) + 1
        mean = w.mean_latency_ms(mid, tokens)
        latency = min(mean * w.rng.lognormvariate(0.0, 0.3), target.timeout_s * 1000.0)
        w.clock.advance(latency / 1000.0)
        if w.rng.random() >= w.success_p(mid):
            raise ProviderError(ErrorClass.TRANSIENT, "simulated upstream error", status=503)
        out = max(1, int((req.max_tokens or 256) * w.rng.uniform(0.3, 0.9)))
        return ChatResponse(id=req.request_id, model=mid, content="ok", usage=Usage(tokens, out))

    def stream(self, req: ChatRequest, target: Target) -> AsyncIterator[Chunk]:
        raise NotImplementedError("the routing benchmark only sends whole requests")

    async def list_models(self) -> list[str]:
        return [m for m, s in self.world.models.items() if s.config.provider_id == self.config.id]

    async def close(self) -> None:
        return None
