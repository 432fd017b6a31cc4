"""Budgets: atomic reservations, micro-dollar arithmetic, persistence across restarts."""

from __future__ import annotations

import asyncio
import calendar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenhub.security.budget import Budgets, counter_key, month_of, to_micro
from tokenhub.state.memory import MemoryState
from tokenhub.store.apikeys import KeyRecord, KeySpendRepo
from tokenhub.store.db import Database

JAN_15 = calendar.timegm((2025, 1, 15, 12, 0, 0))


class Clock:
    def __init__(self, now: float = JAN_15) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _key(budget_usd: float | None = 1.0, id: str = "k" * 16) -> KeyRecord:
    micro = None if budget_usd is None else to_micro(budget_usd)
    return KeyRecord(id=id, digest="0" * 64, prefix="tokenhub_x", name="t", budget_micro=micro)


@pytest.fixture
def db(sqlite_db: Database) -> Database:
    """These tests are about their subject, not the store: SQLite only."""
    return sqlite_db


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def budgets(db: Database, clock: Clock) -> Budgets:
    return Budgets(MemoryState(), KeySpendRepo(db), clock=clock)


def test_to_micro_is_exact_for_decimal_amounts() -> None:
    """0.1 USD is 100000 micro-dollars both ways; reservations round partial micros up."""
    assert to_micro(0.1) == to_micro(0.1, round_up=True) == 100_000
    assert to_micro(0.0000011) == 1 and to_micro(0.0000011, round_up=True) == 2
    assert to_micro(0.0000015) == 2  # half rounds up: never lose a cent
    assert to_micro(0.0) == 0
    for bad in (-0.01, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            to_micro(bad)


@given(st.integers(min_value=0, max_value=10**12))
def test_to_micro_round_trips_whole_micro_dollars(micro: int) -> None:
    """Any whole number of micro-dollars survives the trip through a float USD amount."""
    assert to_micro(micro / 1_000_000) == micro == to_micro(micro / 1_000_000, round_up=True)


def test_month_is_the_utc_calendar_month() -> None:
    """Month keys are YYYYMM in UTC, turning over at midnight UTC."""
    end = calendar.timegm((2025, 1, 31, 23, 59, 59))
    assert month_of(end) == "202501" and month_of(end + 1) == "202502"


async def test_fifty_concurrent_reservations_never_exceed_the_budget(budgets: Budgets) -> None:
    """50 concurrent requests of 0.03 USD against 1 USD: 33 pass and total spend <= budget."""
    key = _key(1.0)

    async def request() -> bool:
        res = await budgets.reserve(key, 0.03)
        if res is None:
            return False
        await asyncio.sleep(0)  # other requests reserve while this one is in flight
        await budgets.settle(res, 0.025)
        return True

    admitted = await asyncio.gather(*(request() for _ in range(50)))
    assert sum(admitted) == 33
    assert await budgets.month_to_date_usd(key.id) == pytest.approx(33 * 0.025)
    assert await budgets.month_to_date_usd(key.id) <= 1.0


async def test_settle_and_release_arithmetic_in_micro_dollars(budgets: Budgets) -> None:
    """Settling moves the counter by actual - reserved; release gives everything back."""
    key = _key(1.0)
    a = await budgets.reserve(key, 0.300001)
    b = await budgets.reserve(key, 0.2)
    assert a is not None and b is not None and a.micro == 300_001
    assert await budgets.remaining_usd(key) == pytest.approx(0.499999)
    await budgets.settle(a, 0.1234565)  # rounds to nearest: 123457
    await budgets.settle(a, 99.0)  # a second settle is ignored
    await budgets.release(b)
    await budgets.release(b)
    assert await budgets.month_to_date_usd(key.id) == 0.123457
    assert await budgets.remaining_usd(key) == 0.876543


async def test_real_cost_above_the_reservation_is_still_counted(budgets: Budgets) -> None:
    """Spend beyond what was held counts in full, and blocks the next reservation."""
    key = _key(0.5)
    res = await budgets.reserve(key, 0.1)
    assert res is not None
    await budgets.settle(res, 0.6)
    assert await budgets.month_to_date_usd(key.id) == 0.6
    assert await budgets.remaining_usd(key) == 0.0
    assert await budgets.reserve(key, 0.000001) is None


async def test_exact_fit_is_allowed_and_one_micro_more_is_not(budgets: Budgets) -> None:
    """A reservation landing exactly on the budget passes; one micro-dollar more does not."""
    key = _key(0.3)
    assert await budgets.reserve(key, 0.1) is not None
    assert await budgets.reserve(key, 0.2) is not None
    assert await budgets.reserve(key, 0.000001) is None


async def test_keys_without_budget_count_spend_but_never_refuse(budgets: Budgets) -> None:
    """No budget: every reservation passes, remaining is None, settled spend is counted."""
    key = _key(None)
    assert await budgets.remaining_usd(key) is None
    res = await budgets.reserve(key, 1e6)
    assert res is not None and res.micro == 0
    await budgets.settle(res, 0.42)
    assert await budgets.month_to_date(["k" * 16, "x" * 16]) == {"k" * 16: 0.42, "x" * 16: 0.0}


async def test_a_new_month_starts_from_zero(budgets: Budgets, clock: Clock) -> None:
    """Budgets are per UTC month; a request reserved before midnight settles in its month."""
    key = _key(1.0)
    res = await budgets.reserve(key, 1.0)
    assert res is not None and await budgets.reserve(key, 0.5) is None
    clock.now = calendar.timegm((2025, 2, 1, 0, 0, 1))
    assert await budgets.remaining_usd(key) == 1.0
    await budgets.settle(res, 0.9)
    assert await budgets.month_to_date_usd(key.id) == 0.0
    assert await budgets.reserve(key, 1.0) is not None


async def test_spend_survives_a_restart(db: Database, clock: Clock) -> None:
    """Settled spend is persisted at stop and loaded by a fresh Budgets from the same DB."""
    first = Budgets(MemoryState(), KeySpendRepo(db), clock=clock)
    await first.start()
    key = _key(1.0)
    for _ in range(3):
        res = await first.reserve(key, 0.2)
        assert res is not None
        await first.settle(res, 0.15)
    await first.stop()
    await first.stop()  # idempotent

    second = Budgets(MemoryState(), KeySpendRepo(db), clock=clock)
    assert await second.load() == 1
    assert await second.month_to_date_usd(key.id) == 0.45
    assert await second.reserve(key, 0.56) is None
    assert await second.reserve(key, 0.55) is not None


async def test_load_does_not_double_count_a_shared_state(db: Database, clock: Clock) -> None:
    """A replica starting against a state that already holds the month keeps its value."""
    state = MemoryState()
    repo = KeySpendRepo(db)
    await repo.add_many({("k" * 16, "202501"): 400_000})
    await state.incr(counter_key("k" * 16, "202501"), 700_000)  # live value, newer than DB
    replica = Budgets(state, repo, clock=clock)
    assert await replica.load() == 0
    assert await replica.month_to_date_usd("k" * 16) == 0.7


async def test_flush_batches_settlements_per_key_and_month(db: Database, clock: Clock) -> None:
    """Many settlements become one added row per key and month; failed writes are retried."""
    repo = KeySpendRepo(db)
    budgets = Budgets(MemoryState(), repo, clock=clock)
    for key in (_key(None, "a" * 16), _key(None, "b" * 16)):
        for _ in range(5):
            res = await budgets.reserve(key, 0)
            assert res is not None
            await budgets.settle(res, 0.01)
    await budgets.flush()
    assert await repo.month("202501") == {"a" * 16: 50_000, "b" * 16: 50_000}
    res = await budgets.reserve(_key(None, "a" * 16), 0)
    assert res is not None
    await budgets.settle(res, 0.5)
    await db.close()
    await budgets.flush()  # fails: kept
    await db.start()
    await budgets.flush()
    assert (await repo.month("202501"))["a" * 16] == 550_000
