"""Database: engine lifecycle, SQLite tuning and migrations on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from tests.conftest import sqlite_url
from tokenhub.store.db import MIGRATIONS_DIR, Database
from tokenhub.store.providers import ProviderRepo
from tokenhub.store.schema import metadata
from tokenhub.types import ProviderConfig


async def _version(db: Database) -> list[str]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
        return [r[0] for r in rows]


def _schema_diff(conn: Connection) -> list[object]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(ctx, metadata))


def _head() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


async def test_migrate_twice_is_a_no_op(db: Database) -> None:
    """A second migrate() keeps the revision and the data already stored."""
    await ProviderRepo(db).upsert(ProviderConfig(id="p", type="mock"))
    before = await _version(db)
    await db.migrate()
    assert await _version(db) == before == [_head()]
    assert [p.id for p in await ProviderRepo(db).list()] == ["p"]


async def test_migrations_produce_exactly_the_declared_tables(db: Database) -> None:
    """After migrate() the live schema matches tables.py: no missing or extra columns."""
    async with db.engine.connect() as conn:
        diff = await conn.run_sync(_schema_diff)
        names = await conn.run_sync(lambda c: sorted(sa.inspect(c).get_table_names()))
    assert diff == []
    assert names == sorted(["alembic_version", *metadata.tables])


async def test_sqlite_pragmas_apply_to_every_connection(tmp_path: Path) -> None:
    """Each pooled SQLite connection runs in WAL with busy_timeout, NORMAL sync and FKs on."""
    db = Database(sqlite_url(tmp_path / "nested" / "dir" / "t.db"))
    await db.start()
    try:
        for _ in range(2):  # two concurrent connections: both must be tuned
            async with db.engine.connect() as a, db.engine.connect() as b:
                for conn in (a, b):
                    got = [
                        (await conn.execute(sa.text(f"PRAGMA {name}"))).scalar()
                        for name in ("journal_mode", "busy_timeout", "synchronous", "foreign_keys")
                    ]
                    assert got == ["wal", 5000, 1, 1]
    finally:
        await db.close()
    assert (tmp_path / "nested" / "dir" / "t.db").is_file()


async def test_engine_before_start_raises() -> None:
    """Using the engine before start() fails with a clear message, and close() is safe."""
    db = Database("sqlite+aiosqlite:///unused.db")
    with pytest.raises(RuntimeError, match=r"start\(\)"):
        _ = db.engine
    await db.close()


async def test_close_then_start_again(tmp_path: Path) -> None:
    """A closed Database can be started again and still sees its data."""
    db = Database(sqlite_url(tmp_path / "t.db"))
    await db.start()
    await db.migrate()
    await ProviderRepo(db).upsert(ProviderConfig(id="p", type="mock"))
    await db.close()
    await db.start()
    try:
        assert await ProviderRepo(db).get("p") is not None
    finally:
        await db.close()
