"""The database handle: one async engine, SQLite tuning, programmatic migrations.

The same code serves the embedded default (SQLite in WAL mode under the data directory)
and the distributed deployment (PostgreSQL through asyncpg); only the URL differs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Any constant works: it only has to be the same in every replica.
_MIGRATION_LOCK_ID = 0x70CE_4B0B

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA busy_timeout=5000",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
)


class Database:
    """An async SQLAlchemy engine for ``url``, created by ``start`` and disposed by ``close``.

    ``url`` is a SQLAlchemy async URL, as ``Settings.database_url`` produces:
    ``sqlite+aiosqlite:///abs/path.db`` or ``postgresql+asyncpg://user@host/db``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("Database.start() has not been called")
        return self._engine

    @property
    def dialect(self) -> str:
        """The backend name: ``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    async def start(self) -> None:
        """Create the engine (and, for SQLite, the file's parent directory)."""
        if self._engine is not None:
            return
        url = make_url(self.url)
        if url.get_backend_name() == "sqlite":
            _make_parent_dir(url.database)
        # orjson for JSON columns: several times faster than the json module both ways.
        engine = create_async_engine(
            url, json_serializer=json_dumps, json_deserializer=orjson.loads
        )
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine.sync_engine, "connect", apply_sqlite_pragmas)
        self._engine = engine

    async def migrate(self) -> None:
        """Upgrade the schema to the newest revision; a no-op when already there."""
        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Replicas starting together must not run the same migration twice.
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK_ID)))
            await conn.run_sync(_upgrade_heads)

    async def close(self) -> None:
        """Dispose of the engine and its pooled connections."""
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None


def upsert(
    dialect: str,
    table: sa.Table,
    values: Mapping[str, Any],
    *,
    keep: Iterable[str] = (),
) -> sa.Insert:
    """``INSERT .. ON CONFLICT (primary key) DO UPDATE`` for ``dialect``.

    Every column in ``values`` except the primary key and ``keep`` (e.g. ``created_at``)
    is overwritten on conflict. The statement is atomic on both backends, so concurrent
    upserts of one key end with one row.
    """
    keys = [c.name for c in table.primary_key.columns]
    frozen = set(keys) | set(keep)
    if dialect == "postgresql":
        pg_stmt = postgresql.insert(table).values(dict(values))
        changes = {k: pg_stmt.excluded[k] for k in values if k not in frozen}
        return pg_stmt.on_conflict_do_update(index_elements=keys, set_=changes)
    if dialect == "sqlite":
        lite_stmt = sqlite.insert(table).values(dict(values))
        changes = {k: lite_stmt.excluded[k] for k in values if k not in frozen}
        return lite_stmt.on_conflict_do_update(index_elements=keys, set_=changes)
    raise ValueError(f"upsert is not supported on the {dialect!r} backend")


# Rows per multi-row INSERT on SQLite; with at most ~20 columns a statement stays far
# below SQLite's limit of 32,766 bound parameters. A power of two: see BulkInsert.
SQLITE_ROWS_PER_INSERT = 256


# One driver call: SQL and its parameters (a list of rows for executemany, or one tuple).
_Call = tuple[str, list[Sequence[Any]] | tuple[Any, ...]]


class BulkInsert:
    """Append many rows of ``columns`` to ``table`` with as few driver calls as possible.

    Rows are tuples in ``columns`` order, values ready for the driver (JSON as text),
    so no per-row processing happens in SQLAlchemy. PostgreSQL gets one ``executemany``
    (asyncpg pipelines it). SQLite gets multi-row ``INSERT .. VALUES (..), (..)``
    statements of up to ``SQLITE_ROWS_PER_INSERT`` rows: the sqlite3 module releases
    and re-takes the GIL around every statement it steps, so a per-row executemany
    from a background thread waits for the GIL once per row while the serving thread
    is busy; one statement per 256 rows waits once.

    Statement sizes are powers of two (full chunks of 256, then the remainder in binary:
    300 rows are 256 + 32 + 8 + 4), so a table has at most nine statement shapes. With
    a statement per row count, every batch size minted a new one, and the sqlite3
    module's cache of up to 128 prepared statements, each a few hundred KB for 256 rows,
    grew the process by ~40 MB under light load.
    """

    def __init__(self, table: sa.Table, columns: Sequence[str]) -> None:
        self.table = table
        self.columns = tuple(columns)
        self._sql: dict[tuple[str, int], str] = {}

    async def __call__(self, conn: AsyncConnection, rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows`` through an async connection, inside its transaction."""
        for sql, params in self._calls(conn.dialect, rows):
            await conn.exec_driver_sql(sql, params)

    def run_sync(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows`` through a synchronous connection, inside its transaction."""
        for sql, params in self._calls(conn.dialect, rows):
            conn.exec_driver_sql(sql, params)

    def _calls(self, dialect: sa.Dialect, rows: Sequence[Sequence[Any]]) -> Iterator[_Call]:
        if not rows:
            return
        if dialect.name != "sqlite":
            yield self._statement(dialect, 1), list(rows)
            return
        start, n = 0, len(rows)
        while start < n:
            left = n - start
            size = min(SQLITE_ROWS_PER_INSERT, 1 << (left.bit_length() - 1))
            chunk = rows[start : start + size]
            yield self._statement(dialect, size), tuple(chain.from_iterable(chunk))
            start += size

    def _statement(self, dialect: sa.Dialect, n: int) -> str:
        key = (dialect.name, n)
        sql = self._sql.get(key)
        if sql is None:
            compiled = (
                self.table.insert()
                .inline()
                .compile(dialect=dialect, column_keys=list(self.columns))
            )
            # The tuples are passed positionally: their order must be the statement's.
            if tuple(compiled.positiontup or ()) != self.columns:
                raise RuntimeError(f"unexpected parameter order for {self.table.name}")
            sql = compiled.string
            if n > 1:  # "INSERT INTO t (a, b) VALUES (?, ?)" -> "... VALUES (?, ?), (?, ?)"
                head, sep, row = sql.rpartition(" VALUES ")
                sql = head + sep + ", ".join([row] * n)
            self._sql[key] = sql
        return sql


def json_dumps(value: Any) -> str:
    """JSON text of ``value`` as stored in JSON columns (orjson; non-str keys allowed)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _make_parent_dir(database: str | None) -> None:
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def apply_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Runs for every new pooled connection: these pragmas are per connection
    # (except journal_mode, which is stored in the file but cheap to repeat).
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def _upgrade_heads(conn: Connection) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "heads")
