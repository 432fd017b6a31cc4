"""Provider health: a per-key circuit breaker with error rate and latency tracking.

A key is any string: a provider id, or ``"provider@url"`` for one endpoint of a
provider that has several. Each key moves through::

    healthy --(degraded_after consecutive errors)--> degraded
    degraded --(down_after consecutive errors)--> down
    down --(cooldown_s elapsed)--> half_open   (one trial request is let through)
    half_open --success--> healthy
    half_open --failure--> down                (the cooldown starts again)

Any success resets the streak and returns the key to healthy. Independently of that
state, ``cool_down`` (a 429 with Retry-After) makes a key unavailable until its time is
up. Only transient and fatal errors count toward the streak: a rate limit has its own
cooldown, and a context overflow is the request's fault, not the provider's.

Times come from an injected monotonic clock, so tests move time instead of sleeping.

Listeners (``add_listener``) hear ``(key, old_state, new_state)`` whenever a recorded
outcome changes a key's state. Down to half-open happens by the clock alone; it is
announced once per trip, when it is first noticed: the router claiming the trial
(``acquire``) or an outcome (a probe's, say) recorded for the key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from tokenhub.types import Clock, ErrorClass, monotonic

log = logging.getLogger("tokenhub.health")

HealthListener = Callable[[str, str, str], None]
"""Called with ``(key, old_state, new_state)`` after a recorded state change."""

HEALTHY = "healthy"
DEGRADED = "degraded"
DOWN = "down"
HALF_OPEN = "half_open"

_STREAK_CLASSES = frozenset({ErrorClass.TRANSIENT.value, ErrorClass.FATAL.value})
_NOT_ERRORS = frozenset({ErrorClass.CONTEXT_OVERFLOW.value})


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    """A read-only view of one key's health at the moment it was taken.

    Times (``*_at``, ``cooldown_until``) are readings of the tracker's monotonic clock.
    """

    key: str
    state: str
    available: bool
    requests: int
    errors: int
    consecutive_errors: int
    error_rate: float
    latency_ema_ms: float | None
    last_error: str | None
    last_error_class: str | None
    last_error_at: float | None
    last_success_at: float | None
    cooldown_until: float | None
    cooldown_reason: str | None


@dataclass(slots=True)
class _Entry:
    """Mutable per-key bookkeeping, private to the tracker."""

    requests: int = 0
    errors: int = 0
    consecutive: int = 0
    latency_ema_ms: float | None = None
    last_error: str | None = None
    last_error_class: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None
    tripped: bool = False  # the breaker is open (down or half-open)
    down_until: float = 0.0
    trial_until: float = 0.0  # a half-open trial is in flight until then
    half_open_announced: float = 0.0  # the down_until whose end listeners have heard of
    limited_until: float = 0.0  # rate-limit cooldown, independent of the breaker
    limit_reason: str | None = None


class HealthTracker:
    """Tracks health per key and answers whether a key may take a request now."""

    def __init__(
        self,
        *,
        clock: Clock = monotonic,
        degraded_after: int = 2,
        down_after: int = 5,
        cooldown_s: float = 30.0,
        ema_alpha: float = 0.2,
    ) -> None:
        if not 0 < degraded_after <= down_after:
            raise ValueError("need 0 < degraded_after <= down_after")
        if cooldown_s <= 0 or not 0 < ema_alpha <= 1:
            raise ValueError("need cooldown_s > 0 and 0 < ema_alpha <= 1")
        self._clock = clock
        self._degraded_after = degraded_after
        self._down_after = down_after
        self._cooldown_s = cooldown_s
        self._alpha = ema_alpha
        self._entries: dict[str, _Entry] = {}
        self._listeners: list[HealthListener] = []

    # -- listeners ---------------------------------------------------------------

    def add_listener(self, listener: HealthListener) -> None:
        """Call ``listener(key, old_state, new_state)`` on every recorded state change."""
        self._listeners.append(listener)

    def remove_listener(self, listener: HealthListener) -> None:
        """Stop calling ``listener`` (no error when it was never added)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    # -- recording ---------------------------------------------------------------

    def record_success(self, key: str, latency_ms: float) -> None:
        """A request to ``key`` succeeded after ``latency_ms``."""
        e = self._entry(key)
        before = self._noticed(key, e, self._clock()) if self._listeners else ""
        e.requests += 1
        e.consecutive = 0
        e.tripped = False
        e.down_until = e.trial_until = 0.0
        e.last_success_at = self._clock()
        # Only successes feed the latency average: a fast 500 says nothing about speed.
        if e.latency_ema_ms is None:
            e.latency_ema_ms = float(latency_ms)
        else:
            e.latency_ema_ms += self._alpha * (latency_ms - e.latency_ema_ms)
        if self._listeners:
            self._announce(key, e, before)

    def record_failure(
        self,
        key: str,
        error_class: ErrorClass | str,
        message: str,
        latency_ms: float | None = None,
    ) -> None:
        """A request to ``key`` failed with ``error_class``; may trip the breaker."""
        e = self._entry(key)
        now = self._clock()
        before = self._noticed(key, e, now) if self._listeners else ""
        cls = str(error_class)
        e.requests += 1
        e.trial_until = 0.0
        e.last_error = message[:300]
        e.last_error_class = cls
        e.last_error_at = now
        if cls not in _NOT_ERRORS:
            e.errors += 1
        if cls in _STREAK_CLASSES:
            e.consecutive += 1
            if e.tripped or e.consecutive >= self._down_after:
                # A failed half-open trial (or a late failure while down) restarts the cooldown.
                e.tripped = True
                e.down_until = now + self._cooldown_s
        if self._listeners:
            self._announce(key, e, before)

    def cool_down(self, key: str, seconds: float, reason: str) -> None:
        """Make ``key`` unavailable for ``seconds`` whatever its state (429 Retry-After)."""
        e = self._entry(key)
        until = self._clock() + max(0.0, seconds)
        if until > e.limited_until:
            e.limited_until = until
            e.limit_reason = reason

    def forget(self, key: str) -> None:
        """Drop everything known about ``key`` (the provider was removed)."""
        self._entries.pop(key, None)

    # -- queries -----------------------------------------------------------------

    def is_available(self, key: str) -> bool:
        """Whether a request may go to ``key`` now (does not claim a half-open trial)."""
        e = self._entries.get(key)
        return e is None or self._available(e, self._clock())

    def acquire(self, key: str) -> bool:
        """Like ``is_available``, but claims the single half-open trial when there is one.

        The router calls this right before dispatching, so that concurrent requests do
        not all pile onto a provider that just came out of its cooldown. An unreported
        trial expires after ``cooldown_s``.
        """
        e = self._entries.get(key)
        if e is None:
            return True
        now = self._clock()
        if not self._available(e, now):
            return False
        if e.tripped:
            if self._listeners:
                self._noticed(key, e, now)
            e.trial_until = now + self._cooldown_s
        return True

    def cooldown_remaining(self, key: str) -> float:
        """Seconds until ``key`` may be tried again (0 when available or half-open)."""
        e = self._entries.get(key)
        if e is None:
            return 0.0
        now = self._clock()
        until = max(e.limited_until, e.down_until if e.tripped else 0.0, e.trial_until)
        return max(0.0, until - now)

    def state(self, key: str) -> ProviderHealth:
        """The current health of ``key`` (a healthy blank view when never seen)."""
        e = self._entries.get(key) or _Entry()
        now = self._clock()
        until = max(e.limited_until, e.down_until if e.tripped else 0.0)
        reason = e.limit_reason if e.limited_until > now else None
        if reason is None and e.tripped and e.down_until > now:
            reason = "circuit open"
        return ProviderHealth(
            key=key,
            state=self._state_name(e, now),
            available=self._available(e, now),
            requests=e.requests,
            errors=e.errors,
            consecutive_errors=e.consecutive,
            error_rate=e.errors / e.requests if e.requests else 0.0,
            latency_ema_ms=e.latency_ema_ms,
            last_error=e.last_error,
            last_error_class=e.last_error_class,
            last_error_at=e.last_error_at,
            last_success_at=e.last_success_at,
            cooldown_until=until if until > now else None,
            cooldown_reason=reason,
        )

    def error_rate(self, key: str) -> float:
        """Errors over requests seen for ``key`` (0 when never seen)."""
        e = self._entries.get(key)
        return e.errors / e.requests if e and e.requests else 0.0

    def latency_ms(self, key: str) -> float | None:
        """The EMA of successful latencies for ``key``, or None when none was seen."""
        e = self._entries.get(key)
        return e.latency_ema_ms if e else None

    def keys(self) -> list[str]:
        """Every key the tracker holds, sorted."""
        return sorted(self._entries)

    def snapshot(self) -> dict[str, dict[str, object]]:
        """JSON-ready health of every key; times are ages and remainders in seconds."""
        now = self._clock()
        return {key: self._describe(key, now) for key in sorted(self._entries)}

    # -- internals ---------------------------------------------------------------

    def _noticed(self, key: str, e: _Entry, now: float) -> str:
        """``key``'s state now, after announcing down → half-open if nobody has yet."""
        state = self._state_name(e, now)
        if state == HALF_OPEN and e.half_open_announced != e.down_until:
            e.half_open_announced = e.down_until
            self._notify(key, DOWN, HALF_OPEN)
        return state

    def _announce(self, key: str, e: _Entry, before: str) -> None:
        after = self._state_name(e, self._clock())
        if after != before:
            self._notify(key, before, after)

    def _notify(self, key: str, before: str, after: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(key, before, after)
            except Exception:
                # A broken listener must never break the request that recorded the outcome.
                log.exception("health listener failed for %s", key)

    def _entry(self, key: str) -> _Entry:
        e = self._entries.get(key)
        if e is None:
            e = self._entries[key] = _Entry()
        return e

    def _available(self, e: _Entry, now: float) -> bool:
        if e.limited_until > now:
            return False
        return not e.tripped or (e.down_until <= now and e.trial_until <= now)

    def _state_name(self, e: _Entry, now: float) -> str:
        if e.tripped:
            return DOWN if e.down_until > now else HALF_OPEN
        return DEGRADED if e.consecutive >= self._degraded_after else HEALTHY

    def _describe(self, key: str, now: float) -> dict[str, object]:
        h = self.state(key)

        def age(t: float | None) -> float | None:
            return None if t is None else round(now - t, 3)

        return {
            "state": h.state,
            "available": h.available,
            "requests": h.requests,
            "errors": h.errors,
            "consecutive_errors": h.consecutive_errors,
            "error_rate": round(h.error_rate, 4),
            "latency_ema_ms": None if h.latency_ema_ms is None else round(h.latency_ema_ms, 1),
            "last_error": h.last_error,
            "last_error_class": h.last_error_class,
            "last_error_age_s": age(h.last_error_at),
            "last_success_age_s": age(h.last_success_at),
            "cooldown_remaining_s": round(self.cooldown_remaining(key), 3),
            "cooldown_reason": h.cooldown_reason,
        }
