"""The guard: the one object the hot path asks whether a request may proceed.

In order, per request::

    principal = await guard.authenticate(scope["headers"], scope_for_path(path))
    ...parse, plan (cap the policy's max_budget_usd at remaining_budget_usd)...
    await guard.admit(principal, estimated_tokens)          # rpm / tpm
    res = await guard.reserve(principal, max_cost_usd)      # budget
    ...dispatch...
    await guard.settle(res, actual_cost_usd)  # or: await guard.release(res) on failure

Every refusal is a ``TokenHubError`` the surface renders in its own dialect: 401
``missing or invalid api key``, 403 ``scope not allowed``, 429 rate limited (with
Retry-After) or ``budget exceeded``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from tokenhub.errors import TooManyRequests
from tokenhub.security.apikeys import KeyRecord, KeyRing, presented_key
from tokenhub.security.budget import Budgets, Reservation

RATE_CODE = "rate_limit_exceeded"

Principal = KeyRecord
"""Who a request acts for: the authenticated key."""

_PATH_SCOPES = (
    ("/v1/plan", "plan"),
    ("/v1/embeddings", "embeddings"),
    ("/v1/feedback", "feedback"),
    ("/v1/chat", "chat"),  # also /v1/chat/completions
    ("/v1/messages", "chat"),
)


def scope_for_path(path: str) -> str | None:
    """The scope a ``/v1`` route needs; None for routes any valid key may use
    (``/v1/models``)."""
    for prefix, scope in _PATH_SCOPES:
        if path.startswith(prefix):
            return scope
    return None


class KeyLimiter(Protocol):
    """The per-key half of ``tokenhub.security.limits.RateLimiter``."""

    async def check_key_rpm(self, key_id: str, rpm: int) -> float: ...

    async def check_key_tpm(self, key_id: str, tpm: int, tokens: int) -> float: ...

    async def add_key_tokens(self, key_id: str, tpm: int, tokens: int) -> None: ...


class Guard:
    """Authentication, scope, rate limits and budget for the ``/v1`` routes."""

    def __init__(self, keyring: KeyRing, budgets: Budgets, limiter: KeyLimiter) -> None:
        self.keyring = keyring
        self.budgets = budgets
        self.limiter = limiter

    async def authenticate(
        self, headers: Iterable[tuple[bytes, bytes]], scope: str | None
    ) -> Principal:
        """The key the raw ASGI ``headers`` present, allowed ``scope``; 401 or 403."""
        rec = await self.keyring.authenticate(presented_key(headers))
        self.keyring.check_scope(rec, scope)
        self.keyring.touch(rec)
        return rec

    async def admit(self, principal: Principal, est_tokens: int) -> None:
        """Take the request from the key's rpm and tpm buckets; 429 with Retry-After."""
        if principal.rpm:
            wait = await self.limiter.check_key_rpm(principal.id, principal.rpm)
            if wait > 0:
                raise TooManyRequests(
                    "rate limit exceeded: requests per minute", retry_after=wait, code=RATE_CODE
                )
        if principal.tpm:
            wait = await self.limiter.check_key_tpm(principal.id, principal.tpm, est_tokens)
            if wait > 0:
                raise TooManyRequests(
                    "rate limit exceeded: tokens per minute", retry_after=wait, code=RATE_CODE
                )

    async def charge_tokens(self, principal: Principal, admitted: int, used: int) -> None:
        """After the answer: charge the tokens used beyond what ``admit`` took from the
        key's tpm bucket, so estimates that run short do not loosen the limit."""
        if principal.tpm and used > admitted:
            await self.limiter.add_key_tokens(principal.id, principal.tpm, used - admitted)

    async def remaining_budget_usd(self, principal: Principal) -> float | None:
        """What the key may still spend this month (None: no budget); the router's
        ``max_budget_usd`` should not exceed it, so it never picks a model whose
        reservation would not fit."""
        return await self.budgets.remaining_usd(principal)

    async def reserve(self, principal: Principal, max_cost_usd: float) -> Reservation:
        """Hold the request's maximum cost against the key's budget; 429 when it does not
        fit (``code="budget_exceeded"``)."""
        res = await self.budgets.reserve(principal, max_cost_usd)
        if res is None:
            raise TooManyRequests("budget exceeded", code="budget_exceeded")
        return res

    async def settle(self, res: Reservation, cost_usd: float) -> None:
        """Count the request's real cost instead of the held amount (once)."""
        await self.budgets.settle(res, cost_usd)

    async def release(self, res: Reservation) -> None:
        """Give the held amount back: the request cost nothing (once)."""
        await self.budgets.release(res)


ANONYMOUS = KeyRecord(id="anonymous", digest="", prefix="", name="anonymous")


class OpenGuard(Guard):
    """``TOKENHUB_CLIENT_AUTH=false``: every request acts as one anonymous key with no
    limits or budget (spend is still counted). For closed test rigs and for measuring
    what authentication costs; never for a gateway others can reach."""

    async def authenticate(
        self, headers: Iterable[tuple[bytes, bytes]], scope: str | None
    ) -> Principal:
        return ANONYMOUS
