"""Helpers shared by the vault tests: a movable clock, light KDF costs, a fresh store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import sqlalchemy as sa

from tokenhub.security.vault import KdfParams, Vault
from tokenhub.store.db import Database
from tokenhub.store.vault import VaultRepo

# Argon2id at its minimum cost: the suite stays fast; one test uses the real defaults.
LIGHT_KDF = KdfParams(time_cost=1, memory_kib=8, parallelism=1)
PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple sideways 2024"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'tokenhub.db'}"


def asyncpg_url(dsn: str) -> str:
    return "postgresql+asyncpg://" + dsn.removeprefix("postgresql://")


@asynccontextmanager
async def migrated(url: str) -> AsyncIterator[Database]:
    """A started database with every migration applied, closed afterwards."""
    db = Database(url)
    await db.start()
    await db.migrate()
    try:
        yield db
    finally:
        await db.close()


def make_vault(db: Database, clock: FakeClock, **kw: object) -> Vault:
    return Vault(VaultRepo(db), clock=clock, kdf=LIGHT_KDF, **kw)  # type: ignore[arg-type]


async def raw_rows(db: Database, table: str) -> list[dict[str, object]]:
    """Every row of ``table`` as stored (ciphertext included)."""
    async with db.engine.connect() as conn:
        rows = await conn.execute(sa.text(f"SELECT * FROM {table}"))
        return [dict(r._mapping) for r in rows]
