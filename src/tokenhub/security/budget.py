"""Monthly budgets per API key that hold under concurrency, in integer micro-dollars.

Each key has one counter per UTC month in the shared state, ``spend:{key_id}:{YYYYMM}``,
holding settled spend plus the reservations of requests still in flight. Before dispatch
a request atomically reserves its maximum cost (``SharedState.reserve`` refuses to pass
the limit, across replicas too); when it ends the reservation is settled to the real
cost or released. Keys without a budget skip the reservation but their settled spend is
still counted, so every key can show its month-to-date spend.

Settled spend is also added to the store (``key_spend``) by a batched background writer,
and ``load()`` seeds the counters from it at start-up with set-if-absent semantics, so
replicas sharing one Redis never count a month twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from tokenhub.state.base import SharedState
from tokenhub.store.apikeys import MICRO, KeyRecord, KeySpendRepo

log = logging.getLogger("tokenhub.security")

# Counters outlive their month by a few weeks; the store keeps the history.
COUNTER_TTL_S = 62 * 86400.0


def to_micro(usd: float, *, round_up: bool = False) -> int:
    """``usd`` in micro-dollars, exactly as written in decimal (0.1 is 100000, not
    100001): rounded up for reservations, to nearest for settlement."""
    if not math.isfinite(usd) or usd < 0:
        raise ValueError("an amount of money must be finite and non-negative")
    mode = ROUND_CEILING if round_up else ROUND_HALF_UP
    return int((Decimal(repr(usd)) * MICRO).to_integral_value(mode))


def month_of(epoch_s: float) -> str:
    """The UTC month of ``epoch_s`` as ``YYYYMM``."""
    t = time.gmtime(epoch_s)
    return f"{t.tm_year:04d}{t.tm_mon:02d}"


def counter_key(key_id: str, month: str) -> str:
    return f"spend:{key_id}:{month}"


@dataclass(slots=True)
class Reservation:
    """Money held for one request until it is settled or released (once)."""

    key_id: str
    counter: str  # the month's counter at reservation time, even if the month turns
    month: str
    micro: int
    done: bool = False


class Budgets:
    """Reserve, settle and release spend against each key's monthly budget.

    ``clock`` is wall-clock epoch seconds (it picks the UTC month).
    """

    def __init__(
        self,
        state: SharedState,
        spend_repo: KeySpendRepo,
        *,
        clock: Callable[[], float] = time.time,
        flush_interval_s: float = 5.0,
    ) -> None:
        self._state = state
        self._repo = spend_repo
        self._clock = clock
        self._flush_interval = flush_interval_s
        self._pending: dict[tuple[str, str], int] = {}  # (key_id, month) -> micro-dollars
        self._task: asyncio.Task[None] | None = None

    # -- the hot path --------------------------------------------------------------

    async def remaining_usd(self, rec: KeyRecord) -> float | None:
        """What is left of ``rec``'s budget this month; None when it has no budget."""
        if rec.budget_micro is None:
            return None
        used = await self._state.get_int(counter_key(rec.id, self.month()))
        return max(0, rec.budget_micro - used) / MICRO

    async def reserve(self, rec: KeyRecord, amount_usd: float) -> Reservation | None:
        """Hold ``amount_usd`` (rounded up to the micro-dollar); None when it would take
        the month past the budget."""
        month = self.month()
        counter = counter_key(rec.id, month)
        if rec.budget_micro is None:
            return Reservation(rec.id, counter, month, 0)
        micro = to_micro(amount_usd, round_up=True)
        if not await self._state.reserve(counter, micro, rec.budget_micro, COUNTER_TTL_S):
            return None
        return Reservation(rec.id, counter, month, micro)

    async def settle(self, res: Reservation, actual_usd: float) -> None:
        """Replace the held amount by the real cost, which is counted even when it
        exceeds the reservation: money spent is never forgotten."""
        if res.done:
            return
        res.done = True
        actual = to_micro(actual_usd)
        delta = actual - res.micro
        if delta:
            await self._state.incr(res.counter, delta, COUNTER_TTL_S)
        if actual:
            slot = (res.key_id, res.month)
            self._pending[slot] = self._pending.get(slot, 0) + actual

    async def release(self, res: Reservation) -> None:
        """Give the held amount back (the request failed and cost nothing)."""
        if res.done:
            return
        res.done = True
        if res.micro:
            await self._state.incr(res.counter, -res.micro, COUNTER_TTL_S)

    # -- reporting -------------------------------------------------------------------

    def month(self) -> str:
        return month_of(self._clock())

    async def month_to_date_usd(self, key_id: str) -> float:
        """This month's spend of ``key_id``, reservations in flight included."""
        return await self._state.get_int(counter_key(key_id, self.month())) / MICRO

    async def month_to_date(self, key_ids: Iterable[str]) -> dict[str, float]:
        month = self.month()
        return {k: await self._state.get_int(counter_key(k, month)) / MICRO for k in key_ids}

    # -- persistence -----------------------------------------------------------------

    async def load(self) -> int:
        """Seed this month's counters from the store where the state has none yet;
        returns how many were seeded."""
        month = self.month()
        seeded = 0
        for key_id, micro in (await self._repo.month(month)).items():
            value = str(micro).encode()
            if await self._state.set_nx(counter_key(key_id, month), value, COUNTER_TTL_S):
                seeded += 1
        return seeded

    async def flush(self) -> None:
        """Add settled spend to the store in one batch (kept for the next try on failure)."""
        batch, self._pending = self._pending, {}
        try:
            await self._repo.add_many(batch)
        except Exception as exc:
            log.warning("could not persist key spend: %s", type(exc).__name__)
            for slot, micro in batch.items():
                self._pending[slot] = self._pending.get(slot, 0) + micro

    async def start(self) -> None:
        """Start the background spend writer (call ``load()`` first)."""
        if self._task is None:
            self._task = asyncio.create_task(self._flush_loop())

    async def stop(self) -> None:
        """Stop the writer and persist what it holds; idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            await self.flush()
