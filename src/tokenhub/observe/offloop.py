"""The recorder's database writes, done from a thread of their own off the serving loop.

A sink that awaits its database writes on the serving event loop gets one step per loop
iteration, and under load an iteration is long: every open request has work queued in
it. Measured on the bench rig at ~2,500 req/s, a batch of 500 outcomes then took longer
to write than the next batch took to arrive, the recorder's queue filled up and 60% of
the outcomes were dropped; the backlog of live outcomes also made every full garbage
collection take ~25 ms.

``DatabaseWriter`` owns one thread and its own engine on the same database URL. A
``RowSink`` only turns a batch into rows per table (``rows``); the writer computes those
rows and inserts them, in one transaction per batch and sink, in its thread. The
serving loop spends one wake-up per batch.

The thread holds the GIL only between driver calls, and every driver call that lets the
GIL go waits to get it back while the serving thread is busy (up to the interpreter's
switch interval, 5 ms). So the writer makes as few driver calls as it can:

- SQLite: a synchronous ``sqlite3`` connection used directly in the thread (no aiosqlite
  thread hop per call) and multi-row INSERTs (``store.db.BulkInsert``): a handful of
  calls per batch;
- PostgreSQL: an asyncpg engine on an event loop private to the thread; executemany
  pipelines each table's rows in one round trip.

Sinks that only touch memory (metrics, events, the bandit) stay on the serving loop:
they share its objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import sys
import threading
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from tokenhub.store.db import BulkInsert, Database, apply_sqlite_pragmas
from tokenhub.types import Outcome

THREAD_NAME = "tokenhub-db-writer"
_PR_SET_NAME = 15  # linux/prctl.h

Rows = Sequence[tuple[BulkInsert, Sequence[Sequence[Any]]]]


class RowSink(Protocol):
    """A sink that only turns outcomes into rows; ``DatabaseWriter`` stores them."""

    name: str

    def rows(self, batch: Sequence[Outcome]) -> Rows: ...


class DatabaseWriter:
    """One thread that writes row batches to the database at ``url``.

    ``url`` is an async URL as ``Settings.database_url`` gives it; SQLite is written
    through the synchronous driver, PostgreSQL through its async engine on the thread's
    own event loop.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._sqlite = make_url(url).get_backend_name() == "sqlite"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._engine: Engine | None = None  # SQLite
        self._db: Database | None = None  # PostgreSQL

    @property
    def running(self) -> bool:
        return self._loop is not None

    async def start(self) -> None:
        """Start the thread and open the engine (a no-op when running)."""
        if self._loop is not None:
            return
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=_serve, args=(loop,), name=THREAD_NAME, daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        # The loop runs only once the thread has named itself: this returns after both.
        await self._run(_running())
        if self._sqlite:
            url = make_url(self.url).set(drivername="sqlite+pysqlite")
            engine = sa.create_engine(url)
            sa.event.listen(engine, "connect", apply_sqlite_pragmas)
            self._engine = engine
        else:
            self._db = Database(self.url)
            await self._run(self._db.start())

    def sink(self, inner: RowSink) -> OffLoopSink:
        """A recorder sink storing ``inner``'s rows from this writer's thread."""
        return OffLoopSink(self, inner)

    async def write(self, sink: RowSink, batch: Sequence[Outcome]) -> None:
        """Compute ``sink``'s rows for ``batch`` and insert them in one transaction,
        all in the writer's thread; return when they are committed."""
        await self._run(self._write(sink, batch))

    async def stop(self) -> None:
        """Close the engine, stop the loop and join the thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if self._db is not None:
                await self._run(self._db.close())
            if self._engine is not None:
                await self._run(self._dispose())
        finally:
            self._loop = self._thread = None
            self._engine = self._db = None
            loop.call_soon_threadsafe(loop.stop)
            await asyncio.to_thread(thread.join)
            loop.close()

    async def _run(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._loop is None:
            coro.close()
            raise RuntimeError("DatabaseWriter.start() has not been called")
        done: Future[None] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        await asyncio.wrap_future(done)

    async def _write(self, sink: RowSink, batch: Sequence[Outcome]) -> None:
        # Runs in the writer's thread; one batch at a time, so the thread's single
        # SQLite connection is never shared and never waits on a lock of its own.
        inserts = sink.rows(batch)
        if self._engine is not None:
            with self._engine.begin() as conn:
                for insert, rows in inserts:
                    insert.run_sync(conn, rows)
        elif self._db is not None:
            async with self._db.engine.begin() as aconn:
                for insert, rows in inserts:
                    await insert(aconn, rows)

    async def _dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


async def _running() -> None:
    """Nothing: awaiting it through ``_run`` waits until the writer's loop runs."""


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    _name_os_thread(THREAD_NAME)
    loop.run_forever()


def _name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` (its first 15 bytes) in the OS too, so that
    ``top -H`` and ``/proc/<pid>/task/*/comm`` tell the writer from the serving thread.
    Best effort: Linux only, silently skipped elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


class OffLoopSink:
    """A ``BatchSink`` whose rows a ``DatabaseWriter`` computes and stores.

    ``sliced = False`` tells the recorder to hand over whole batches: slicing exists to
    keep the serving loop responsive, and this sink's work does not run on it.
    """

    sliced = False

    def __init__(self, writer: DatabaseWriter, inner: RowSink) -> None:
        self.name = inner.name
        self._writer = writer
        self._inner = inner

    async def write(self, batch: Sequence[Outcome]) -> None:
        await self._writer.write(self._inner, batch)
