"""One ``db`` fixture parametrized over SQLite and PostgreSQL: every store test runs on both."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tokenhub.store.db import Database


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def asyncpg_url(dsn: str) -> str:
    return "postgresql+asyncpg://" + dsn.removeprefix("postgresql://")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for an empty database of the parametrized backend."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "data" / "tokenhub.db")
    return asyncpg_url(request.getfixturevalue("pg_dsn"))


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """A started, migrated database, closed after the test."""
    database = Database(db_url)
    await database.start()
    await database.migrate()
    try:
        yield database
    finally:
        await database.close()
