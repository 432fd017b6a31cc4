"""What the chat engine and the embedding router share about failing over: the
reasons a failover step leaves in a decision, attempts as records, the error raised
when every candidate failed, and the guard that turns any upstream failure into a
``ProviderError``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict
from types import MappingProxyType
from typing import Any, TypeVar

from tokenhub.errors import (
    NoEligibleModel,
    ProviderError,
    ServiceUnavailable,
    TokenHubError,
    TooManyRequests,
    UpstreamFailed,
)
from tokenhub.observe.health import HealthTracker
from tokenhub.routing.catalog import Catalog
from tokenhub.types import Attempt, Decision, ErrorClass, ModelConfig, Target

log = logging.getLogger(__name__)

T = TypeVar("T")

# Adapters enforce ``Target.timeout_s`` themselves; this deadline is a safety net that
# fires only when an adapter does not.
TIMEOUT_GRACE_S = 0.25

STEP: Mapping[ErrorClass, str] = MappingProxyType(
    {
        ErrorClass.TRANSIENT: "failover-transient",
        ErrorClass.RATE_LIMITED: "failover-rate-limited",
        ErrorClass.CONTEXT_OVERFLOW: "escalated-context-overflow",
        ErrorClass.FATAL: "failover-fatal",
    }
)


def choose(decision: Decision, model: ModelConfig, reason: str) -> None:
    decision.model = model
    decision.provider_id = model.provider_id
    decision.reason = reason


def failed_attempt(model: ModelConfig, exc: ProviderError, latency_ms: float) -> Attempt:
    return Attempt(
        model=model.id,
        provider=model.provider_id,
        error_class=exc.error_class,
        status=exc.status,
        message=exc.message[:300],
        latency_ms=latency_ms,
    )


def attempt_dict(a: Attempt) -> dict[str, Any]:
    d = asdict(a)
    d["error_class"] = str(a.error_class) if a.error_class is not None else None
    d["latency_ms"] = round(a.latency_ms, 1)
    return d


def exhausted(
    decision: Decision,
    skipped: Mapping[str, str],
    rate_limited: Iterable[str],
    health: HealthTracker,
    what: str = "",
) -> TokenHubError:
    """The error to raise when no candidate answered (``what`` names the kind of model,
    e.g. ``"embedding "``), carrying ``decision`` for the request log."""
    decision.model, decision.provider_id, decision.reason = None, "", "all-failed"
    err: TokenHubError
    if not decision.attempts:
        excluded = {**decision.excluded, **skipped}
        err = NoEligibleModel(f"no eligible {what}model", details={"excluded": excluded})
    elif all(a.error_class == ErrorClass.RATE_LIMITED for a in decision.attempts):
        waits = [health.cooldown_remaining(p) for p in rate_limited]
        err = TooManyRequests(
            f"all {what}providers are rate limited",
            retry_after=min(waits, default=None),
            details={"attempts": [attempt_dict(a) for a in decision.attempts]},
        )
    else:
        attempts = [attempt_dict(a) for a in decision.attempts]
        err = UpstreamFailed(f"all {what}providers failed", details={"attempts": attempts})
    err.decision = decision
    return err


async def guarded(call: Callable[[], Awaitable[T]], target: Target) -> T:
    """Run one upstream call; every failure comes out as a ``ProviderError``."""
    try:
        async with asyncio.timeout(target.timeout_s + TIMEOUT_GRACE_S):
            return await call()
    except ProviderError:
        raise
    except TimeoutError:
        raise ProviderError(
            ErrorClass.TRANSIENT, f"no answer within {target.timeout_s:g}s"
        ) from None
    except Exception as exc:
        # An adapter bug must not take routing down with it; the next model may answer.
        log.warning("adapter %s failed unexpectedly", target.model.provider_id, exc_info=True)
        raise ProviderError(ErrorClass.FATAL, f"adapter error ({type(exc).__name__})") from exc


def nothing_eligible(
    decision: Decision,
    catalog: Catalog,
    gate: Callable[[str], str | None] | None,
    what: str = "",
) -> TokenHubError:
    """The error when planning left no candidate: ``ServiceUnavailable`` when the provider
    gate (a locked vault) excluded a model — unlocking may help — else
    ``NoEligibleModel``; either way with the exclusions and the decision."""
    excluded = dict(decision.excluded)
    gated = None
    if gate is not None:
        for model_id in excluded:
            model = catalog.models.get(model_id)
            if model is not None and (gated := gate(model.provider_id)):
                break
    err: TokenHubError = (
        ServiceUnavailable(gated, details={"excluded": excluded})
        if gated
        else NoEligibleModel(f"no eligible {what}model", details={"excluded": excluded})
    )
    err.decision = decision
    return err
