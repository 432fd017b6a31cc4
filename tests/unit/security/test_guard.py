"""Guard: the hot path's sequence of key, scope, rate limit and budget checks."""

from __future__ import annotations

import asyncio
import time

import pytest

from tokenhub.errors import Forbidden, TooManyRequests, Unauthorized
from tokenhub.security.apikeys import KeyRing
from tokenhub.security.budget import Budgets
from tokenhub.security.guard import Guard, scope_for_path
from tokenhub.security.limits import RateLimiter
from tokenhub.state.memory import MemoryState
from tokenhub.store.apikeys import ApiKeyRepo, KeySpendRepo
from tokenhub.store.db import Database


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(sqlite_db: Database) -> Database:
    """These tests are about their subject, not the store: SQLite only."""
    return sqlite_db


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def guard(db: Database, clock: Clock) -> Guard:
    state = MemoryState(clock=clock)
    return Guard(
        KeyRing(ApiKeyRepo(db), clock=clock),
        Budgets(state, KeySpendRepo(db), clock=clock),
        RateLimiter(state),
    )


def bearer(key: str) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"x"), (b"authorization", f"Bearer {key}".encode())]


def test_scope_for_path_maps_every_v1_route() -> None:
    """Chat surfaces need chat, plan/embeddings/feedback their own scope, models none."""
    assert scope_for_path("/v1/chat/completions") == "chat"
    assert scope_for_path("/v1/messages") == "chat"
    assert scope_for_path("/v1/chat") == "chat"
    assert scope_for_path("/v1/plan") == "plan"
    assert scope_for_path("/v1/embeddings") == "embeddings"
    assert scope_for_path("/v1/feedback") == "feedback"
    assert scope_for_path("/v1/models") is None


async def test_authenticate_accepts_both_sdk_headers_and_checks_scope(guard: Guard) -> None:
    """Bearer and x-api-key both authenticate; a missing scope is a 403, no key a 401."""
    rec, key = await guard.keyring.create("ci", scopes=["chat"])
    assert (await guard.authenticate(bearer(key), "chat")).id == rec.id
    assert (await guard.authenticate([(b"x-api-key", key.encode())], None)).id == rec.id
    with pytest.raises(Forbidden) as forbidden:
        await guard.authenticate(bearer(key), "plan")
    assert forbidden.value.status == 403 and forbidden.value.message == "scope not allowed"
    with pytest.raises(Unauthorized) as missing:
        await guard.authenticate([(b"host", b"x")], "chat")
    assert missing.value.status == 401 and missing.value.message == "missing or invalid api key"


async def test_authenticate_records_last_use(guard: Guard, clock: Clock) -> None:
    """A successful request marks the key used (flushed later, visible at once)."""
    rec, key = await guard.keyring.create("ci")
    await guard.authenticate(bearer(key), "chat")
    assert (await guard.keyring.get(rec.id)).last_used_at == clock.now


async def test_admit_enforces_rpm_with_retry_after(guard: Guard, clock: Clock) -> None:
    """The rpm+1-th request in a minute is a 429 with a Retry-After; time heals it."""
    rec, _ = await guard.keyring.create("ci", rpm=2)
    await guard.admit(rec, 10)
    await guard.admit(rec, 10)
    with pytest.raises(TooManyRequests) as info:
        await guard.admit(rec, 10)
    assert info.value.retry_after == pytest.approx(30.0)
    assert info.value.headers["Retry-After"] == "30" and info.value.code == "rate_limit_exceeded"
    clock.now += 30
    await guard.admit(rec, 10)


async def test_admit_enforces_tpm(guard: Guard) -> None:
    """Estimated tokens are taken from the key's tokens-per-minute bucket."""
    rec, _ = await guard.keyring.create("ci", tpm=1000)
    await guard.admit(rec, 800)
    with pytest.raises(TooManyRequests, match="tokens per minute") as info:
        await guard.admit(rec, 800)
    assert info.value.retry_after and info.value.retry_after > 0


async def test_unlimited_key_is_always_admitted(guard: Guard) -> None:
    """Without rpm/tpm limits admit() never refuses."""
    rec, _ = await guard.keyring.create("ci")
    for _ in range(100):
        await guard.admit(rec, 10**6)


async def test_budget_exceeded_is_a_429_with_its_code(guard: Guard) -> None:
    """A reservation that does not fit is a 429 'budget exceeded' (code budget_exceeded)."""
    rec, _ = await guard.keyring.create("ci", monthly_budget_usd=0.01)
    assert await guard.remaining_budget_usd(rec) == 0.01
    res = await guard.reserve(rec, 0.008)
    with pytest.raises(TooManyRequests) as info:
        await guard.reserve(rec, 0.008)
    assert info.value.status == 429 and info.value.message == "budget exceeded"
    assert info.value.code == "budget_exceeded"
    await guard.release(res)
    assert await guard.remaining_budget_usd(rec) == 0.01


async def test_fifty_concurrent_requests_end_within_the_budget(guard: Guard) -> None:
    """The whole guard sequence, 50 requests at once against 0.1 USD: spend <= budget."""
    rec, key = await guard.keyring.create("ci", monthly_budget_usd=0.1)

    async def request(i: int) -> bool:
        principal = await guard.authenticate(bearer(key), "chat")
        await guard.admit(principal, 100)
        try:
            res = await guard.reserve(principal, 0.007)
        except TooManyRequests:
            return False
        await asyncio.sleep(0.001 * (i % 5))  # the upstream call
        if i % 7 == 0:
            await guard.release(res)  # a failed request costs nothing
        else:
            await guard.settle(res, 0.0069)
        return True

    outcomes = await asyncio.gather(*(request(i) for i in range(50)))
    spent = await guard.budgets.month_to_date_usd(rec.id)
    assert sum(outcomes) >= 14 and spent <= 0.1
    assert await guard.remaining_budget_usd(rec) == pytest.approx(0.1 - spent)


async def test_guard_cpu_cost_per_request_is_small(guard: Guard) -> None:
    """authenticate+admit+reserve+settle on a cached key costs well under a millisecond."""
    rec, key = await guard.keyring.create("ci", monthly_budget_usd=1e6, rpm=10**8, tpm=10**9)
    headers = bearer(key)

    async def one() -> None:
        principal = await guard.authenticate(headers, "chat")
        await guard.admit(principal, 500)
        res = await guard.reserve(principal, 0.01)
        await guard.settle(res, 0.005)

    await one()  # warm the cache
    n = 2000
    start = time.process_time()
    for _ in range(n):
        await one()
    per_request_ms = (time.process_time() - start) / n * 1000
    assert per_request_ms < 1.0, per_request_ms
    assert await guard.budgets.month_to_date_usd(rec.id) == pytest.approx((n + 1) * 0.005)
