"""Routing configuration: defaults, limits and the scoring profile of each mode.

The admin API persists it as JSON (``to_dict``) and applies partial updates
(``from_dict(d, base=current)``); every bad value raises ``ValueError`` naming the field
and the accepted form, so the API can answer with a precise 400.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from tokenhub.config import MODES

__all__ = ["MODES", "Profile", "RoutingConfig"]


@dataclass(frozen=True, slots=True)
class Profile:
    """Weights of the four score terms for one mode (lower score wins)."""

    cost: float
    latency: float
    failure: float
    capability: float


_DEFAULT_PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        "cheap": Profile(0.7, 0.1, 0.1, 0.1),
        "normal": Profile(0.25, 0.25, 0.25, 0.25),
        "high_confidence": Profile(0.05, 0.1, 0.15, 0.7),
        "planning": Profile(0.1, 0.1, 0.2, 0.6),
        "adversarial": Profile(0.1, 0.1, 0.2, 0.6),
        # Thompson sampling ranks by the bandit; this profile only serves when the
        # engine has no bandit attached (then "thompson" routes like "normal").
        "thompson": Profile(0.25, 0.25, 0.25, 0.25),
    }
)


_ZERO = Profile(0.0, 0.0, 0.0, 0.0)


def _default_profiles() -> Mapping[str, Profile]:
    return _DEFAULT_PROFILES


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """Routing defaults, replaced as a whole at runtime (the engine reads it per request)."""

    default_mode: str = "normal"
    max_budget_usd: float = 0.05
    max_latency_ms: int = 20000
    min_weight: int = 0
    max_attempts: int = 5
    context_headroom: float = 0.15
    transient_backoff_ms: tuple[float, ...] = (100.0, 200.0)
    default_output_tokens: int = 512
    rate_limit_cooldown_s: float = 5.0
    profiles: Mapping[str, Profile] = field(default_factory=_default_profiles)

    def profile(self, mode: str) -> Profile:
        """The scoring profile of ``mode`` (KeyError when unknown)."""
        return self.profiles[mode]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; ``from_dict(to_dict())`` gives an equal config."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "profiles"}
        d["transient_backoff_ms"] = list(self.transient_backoff_ms)
        d["profiles"] = {mode: asdict(p) for mode, p in self.profiles.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], base: RoutingConfig | None = None) -> RoutingConfig:
        """Validate ``d`` and merge it onto ``base`` (the defaults when None).

        ``d`` may be partial, profiles included (``{"profiles": {"cheap": {"cost": 1}}}``).
        Raises ``ValueError`` naming the first bad field.
        """
        if not isinstance(d, Mapping):
            raise ValueError("routing config must be a JSON object")
        base = base or cls()
        changes: dict[str, Any] = {}
        for key, value in d.items():
            if key == "profiles":
                changes[key] = _merge_profiles(value, base.profiles)
            elif key in _CHECKS:
                changes[key] = _CHECKS[key](key, value)
            else:
                raise ValueError(f"unknown routing setting '{key}'")
        return replace(base, **changes)

    def updated(self, d: Mapping[str, Any]) -> RoutingConfig:
        """This config with the partial update ``d`` applied."""
        return RoutingConfig.from_dict(d, base=self)


# -- validation -------------------------------------------------------------------


def _number(name: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a number from {lo:g} to {hi:g}")
    if not lo <= value <= hi:
        raise ValueError(f"{name}: expected a number from {lo:g} to {hi:g}, got {value!r}")
    return float(value)


def _integer(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name}: expected a whole number from {lo} to {hi}, got {value!r}")
    return value


def _mode(name: str, value: Any) -> str:
    if value not in MODES:
        raise ValueError(f"{name}: expected one of {', '.join(MODES)}, got {value!r}")
    return str(value)


def _backoffs(name: str, value: Any) -> tuple[float, ...]:
    if not isinstance(value, list | tuple) or len(value) > 10:
        raise ValueError(f"{name}: expected a list of at most 10 delays in milliseconds")
    return tuple(_number(f"{name}[{i}]", v, 0, 60_000) for i, v in enumerate(value))


def _range(kind: Callable[..., Any], lo: float, hi: float) -> Callable[[str, Any], Any]:
    return lambda name, value: kind(name, value, lo, hi)


_CHECKS: Mapping[str, Callable[[str, Any], Any]] = MappingProxyType(
    {
        "default_mode": _mode,
        "max_budget_usd": _range(_number, 0, 100),
        "max_latency_ms": _range(_integer, 1, 300_000),
        "min_weight": _range(_integer, 0, 10),
        "max_attempts": _range(_integer, 1, 20),
        "context_headroom": _range(_number, 0, 0.9),
        "transient_backoff_ms": _backoffs,
        "default_output_tokens": _range(_integer, 1, 1_000_000),
        "rate_limit_cooldown_s": _range(_number, 0, 3600),
    }
)


def _merge_profiles(value: Any, current: Mapping[str, Profile]) -> Mapping[str, Profile]:
    if not isinstance(value, Mapping):
        raise ValueError("profiles: expected an object of mode -> weights")
    merged = dict(current)
    for mode, weights in value.items():
        if mode not in MODES:
            raise ValueError(f"profiles: unknown mode '{mode}', expected one of {', '.join(MODES)}")
        merged[mode] = _profile(f"profiles.{mode}", weights, merged.get(mode, _ZERO))
    return MappingProxyType(merged)


def _profile(name: str, value: Any, current: Profile) -> Profile:
    if not isinstance(value, Mapping):
        raise ValueError(f"{name}: expected an object with cost, latency, failure, capability")
    terms = asdict(current)
    for term, weight in value.items():
        if term not in terms:
            raise ValueError(f"{name}: unknown weight '{term}'")
        terms[term] = _number(f"{name}.{term}", weight, 0, 10)
    if not any(terms.values()):
        raise ValueError(f"{name}: at least one weight must be above 0")
    return Profile(**terms)
