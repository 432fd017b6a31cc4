"""Tiny in-test adapters, clock and sleep for routing tests (plain objects, no mocks)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from tokenhub.errors import ProviderError
from tokenhub.observe.health import HealthTracker
from tokenhub.routing.catalog import Catalog
from tokenhub.routing.config import RoutingConfig
from tokenhub.routing.engine import RoutingEngine
from tokenhub.types import (
    ChatRequest,
    ChatResponse,
    Chunk,
    Dialect,
    ErrorClass,
    Message,
    ModelConfig,
    ProviderConfig,
    Target,
)

Step = ChatResponse | ProviderError
StreamStep = ProviderError | list[Chunk | ProviderError]


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class RecordingSleep:
    """An injected sleep that records delays and advances the fake clock instead."""

    clock: FakeClock
    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.advance(seconds)


def answer(text: str = "ok", model: str = "m") -> ChatResponse:
    return ChatResponse(id="r1", model=model, content=text)


def err(
    cls: ErrorClass, status: int | None = None, retry_after: float | None = None
) -> ProviderError:
    return ProviderError(cls, f"{cls.value} happened", status=status, retry_after=retry_after)


class ScriptedAdapter:
    """Answers calls from per-model scripts; a missing script answers "ok"."""

    dialect = Dialect.NONE

    def __init__(self, config: ProviderConfig, clock: FakeClock | None = None) -> None:
        self.config = config
        self.clock = clock
        self.complete_script: dict[str, list[Step]] = {}
        self.stream_script: dict[str, list[StreamStep]] = {}
        self.calls: list[str] = []
        self.targets: list[Target] = []
        self.closed = False
        self.streams_closed = 0
        self.call_latency_s = 0.0

    async def complete(self, req: ChatRequest, target: Target) -> ChatResponse:
        self.calls.append(target.model.id)
        self.targets.append(target)
        if self.clock is not None:
            self.clock.advance(self.call_latency_s)
        script = self.complete_script.get(target.model.id)
        step = script.pop(0) if script else answer(model=target.model.id)
        if isinstance(step, ProviderError):
            raise step
        return step

    def stream(self, req: ChatRequest, target: Target) -> AsyncIterator[Chunk]:
        self.calls.append(target.model.id)
        script = self.stream_script.get(target.model.id)
        step: StreamStep = (
            script.pop(0) if script else [Chunk(text="ok"), Chunk(finish_reason="stop")]
        )
        return self._run(step)

    async def _run(self, step: StreamStep) -> AsyncIterator[Chunk]:
        try:
            if isinstance(step, ProviderError):
                raise step
            for item in step:
                if isinstance(item, ProviderError):
                    raise item
                yield item
        finally:
            self.streams_closed += 1

    async def list_models(self) -> list[str]:
        return []

    async def close(self) -> None:
        self.closed = True


@dataclass
class Rig:
    """A catalog, tracker and engine over scripted adapters and a fake clock."""

    clock: FakeClock
    sleep: RecordingSleep
    catalog: Catalog
    health: HealthTracker
    engine: RoutingEngine

    def adapter(self, provider_id: str) -> ScriptedAdapter:
        a = self.catalog.adapter(provider_id)
        assert isinstance(a, ScriptedAdapter)
        return a


def make_factory(clock: FakeClock) -> Callable[[ProviderConfig], ScriptedAdapter]:
    return lambda cfg: ScriptedAdapter(cfg, clock)


async def make_rig(
    models: list[ModelConfig], config: RoutingConfig | None = None, timeout_s: float = 30.0
) -> Rig:
    """Build a rig with one provider per distinct ``provider_id`` of ``models``."""
    clock = FakeClock()
    sleep = RecordingSleep(clock)
    catalog = Catalog(make_factory(clock))
    for pid in dict.fromkeys(m.provider_id for m in models):
        await catalog.set_provider(ProviderConfig(id=pid, type="scripted"))
    for m in models:
        catalog.set_model(m)
    health = HealthTracker(clock=clock)
    engine = RoutingEngine(
        catalog, health, config or RoutingConfig(), timeout_s=timeout_s, clock=clock, sleep=sleep
    )
    return Rig(clock, sleep, catalog, health, engine)


def chat(text: str = "hello", **kw: object) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], request_id="req-1", **kw)  # type: ignore[arg-type]
