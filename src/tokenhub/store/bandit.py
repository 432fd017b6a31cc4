"""Bandit persistence: the arms table, the feedback table, and the service that keeps
the in-memory bandit and the store in step.

``bandit_arms`` holds one row per (model, token bucket) arm as of its last update
(decay is applied on read, from ``updated_at``). ``bandit_feedback`` holds the one
judgement a client may give per request (its primary key refuses a second one).

``BanditStore.start()`` restores the arms; when the table is empty (first start, or a
gateway that never saved) it rebuilds them from the reward log. Either way, reward rows
newer than the newest saved arm are replayed, so a crash loses at most the feedback
given since the last save. The arms are saved every ``interval_s`` and at ``stop()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from tokenhub.routing.bandit import ArmState, Bandit
from tokenhub.store.db import Database, upsert
from tokenhub.store.logs import reward_log
from tokenhub.store.tables import metadata
from tokenhub.types import Clock

log = logging.getLogger("tokenhub.bandit")

bandit_arms = sa.Table(
    "bandit_arms",
    metadata,
    sa.Column("model", sa.String(300), primary_key=True),
    sa.Column("bucket", sa.String(10), primary_key=True),
    sa.Column("alpha", sa.Float, nullable=False),
    sa.Column("beta", sa.Float, nullable=False),
    sa.Column("pulls", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

bandit_feedback = sa.Table(
    "bandit_feedback",
    metadata,
    sa.Column("request_id", sa.String(200), primary_key=True),
    sa.Column("ts", sa.Float, nullable=False, index=True),
    sa.Column("api_key_id", sa.String(200), nullable=True),
    sa.Column("model", sa.String(300), nullable=False),
    sa.Column("bucket", sa.String(10), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("comment", sa.String(2000), nullable=True),
)

REPLAY_LIMIT = 200_000  # reward rows replayed at start-up at most (newest kept)


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    """One client judgement of one request."""

    request_id: str
    ts: float
    api_key_id: str | None
    model: str
    bucket: str
    score: float
    comment: str | None = None


class BanditRepo:
    """Reads and writes the arms, the feedback, and reward-log rows for rebuilding."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def save_arms(self, arms: Sequence[ArmState]) -> None:
        """Upsert every arm in one transaction."""
        if not arms:
            return
        async with self._db.engine.begin() as conn:
            for arm in arms:
                await conn.execute(upsert(self._db.dialect, bandit_arms, _arm_row(arm)))

    async def load_arms(self) -> list[ArmState]:
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(sa.select(bandit_arms))
            return [ArmState(**dict(r._mapping)) for r in rows]

    async def rewards_since(
        self, since: float, limit: int = REPLAY_LIMIT
    ) -> list[tuple[float, str, str, float]]:
        """``(ts, model, bucket, reward)`` of reward rows after ``since``, oldest first."""
        c = reward_log.c
        newest = (
            sa.select(c.id, c.ts, c.model, c.token_bucket, c.reward)
            .where(c.ts > since)
            .order_by(c.ts.desc(), c.id.desc())
            .limit(limit)
            .subquery()
        )
        stmt = sa.select(newest).order_by(newest.c.ts, newest.c.id)
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(stmt)
            return [(float(r.ts), r.model, r.token_bucket, float(r.reward)) for r in rows]

    async def add_feedback(self, row: FeedbackRow) -> bool:
        """Store ``row``; False when the request already has feedback."""
        values: dict[str, Any] = {
            "request_id": row.request_id,
            "ts": row.ts,
            "api_key_id": row.api_key_id,
            "model": row.model,
            "bucket": row.bucket,
            "score": row.score,
            "comment": row.comment,
        }
        try:
            async with self._db.engine.begin() as conn:
                await conn.execute(bandit_feedback.insert().values(values))
        except IntegrityError:
            return False
        return True

    async def get_feedback(self, request_id: str) -> FeedbackRow | None:
        stmt = sa.select(bandit_feedback).where(bandit_feedback.c.request_id == request_id)
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else FeedbackRow(**dict(row._mapping))


def _arm_row(arm: ArmState) -> dict[str, Any]:
    return {
        "model": arm.model,
        "bucket": arm.bucket,
        "alpha": arm.alpha,
        "beta": arm.beta,
        "pulls": arm.pulls,
        "updated_at": arm.updated_at,
    }


class BanditStore:
    """Restores the bandit at start, saves it periodically and at stop."""

    def __init__(
        self,
        bandit: Bandit,
        repo: BanditRepo,
        *,
        interval_s: float = 30.0,
        clock: Clock = time.time,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be above 0")
        self.bandit = bandit
        self.repo = repo
        self.interval_s = interval_s
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    async def load(self) -> int:
        """Restore saved arms, then replay newer reward rows; returns rows replayed.

        With no saved arms, only rewards within ten half-lives are replayed: older
        evidence would have decayed to under 0.1% of its weight anyway.
        """
        arms = await self.repo.load_arms()
        self.bandit.restore(arms)
        since = self.bandit.last_update if arms else self._clock() - 10 * self.bandit.half_life_s
        rows = await self.repo.rewards_since(since)
        for ts, model, bucket, reward in rows:
            self.bandit.update(model, bucket, reward, at=ts)
        return len(rows)

    async def save(self) -> None:
        await self.repo.save_arms(self.bandit.snapshot())

    async def start(self) -> None:
        """Load, then save every ``interval_s`` in a background task."""
        await self.load()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tokenhub-bandit-save")

    async def stop(self) -> None:
        """Stop the periodic save and save once more. Idempotent."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.save()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.save()
            except Exception:  # a failed save is retried next round; never end the task
                log.warning("saving bandit arms failed", exc_info=True)
