"""Shared fixtures: real services (PostgreSQL, Redis) and loopback helpers.

Tests that need PostgreSQL or Redis skip with a reason when the service is absent,
unless TOKENHUB_REQUIRE_SERVICES=1 (CI), where they fail instead.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tokenhub.store.db import Database

pytest_plugins = ["tests.fakes.fixtures"]

PG_HOST, PG_PORT = "127.0.0.1", 5432
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REQUIRE_SERVICES = os.environ.get("TOKENHUB_REQUIRE_SERVICES") == "1"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def need_service(name: str, host: str, port: int) -> None:
    """Skip (or fail in CI) when a service is not listening."""
    if _reachable(host, port):
        return
    msg = f"{name} not reachable at {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(msg + " and TOKENHUB_REQUIRE_SERVICES=1")
    pytest.skip(msg)


@pytest.fixture
async def pg_dsn() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards.

    Yields a ``postgresql://`` DSN (the form TOKENHUB_DB_DSN takes).
    """
    need_service("PostgreSQL", PG_HOST, PG_PORT)
    import asyncpg

    name = f"tokenhub_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres", database="test")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres", database="test")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
def redis_url() -> str:
    need_service("Redis", REDIS_HOST, REDIS_PORT)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def asyncpg_url(dsn: str) -> str:
    return "postgresql+asyncpg://" + dsn.removeprefix("postgresql://")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for an empty database of the parametrized backend: store tests run on both."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "data" / "tokenhub.db")
    return asyncpg_url(request.getfixturevalue("pg_dsn"))


@asynccontextmanager
async def migrated(url: str) -> AsyncIterator[Database]:
    """A started, migrated database at ``url``, closed on the way out."""
    database = Database(url)
    await database.start()
    await database.migrate()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """A started, migrated database of the parametrized backend, closed after the test."""
    async with migrated(db_url) as database:
        yield database


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    """A started, migrated SQLite database, for tests whose subject is not the store."""
    async with migrated(sqlite_url(tmp_path / "data" / "tokenhub.db")) as database:
        yield database
