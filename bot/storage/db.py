"""Engine and session factory, with the SQLite hardening from docs/security.md §2.10.

SQLite has one writer at a time. A transaction that is going to write asks for
`write()`: on SQLite it queues behind the process's other writers in the event loop
(fair, and nobody spins in SQLite's busy handler against a sibling) and then starts
with `BEGIN IMMEDIATE`, so it holds the write lock from its first statement instead of
upgrading a read half-way (500 new users at once ended in "database is locked"). The
only wait left in SQLite is for a writer outside the process; past `BUSY_SECONDS` the
caller gets `DatabaseBusy` (a `bot.errors.Busy`): the user hears "busy, try again", and
writers queued right behind it are told the same at once instead of each waiting its
own `BUSY_SECONDS`. Waiting in the queue itself is progress (others are writing), so it
is bounded only by `QUEUE_SECONDS`. Reads (`session()`) never queue: in WAL mode they
go on while someone writes.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from bot.clock import Clock, system_clock
from bot.errors import Busy

BUSY_SECONDS = 5.0  # how long a write waits for a lock held outside the process
QUEUE_SECONDS = 60.0  # how long a write waits for its turn behind this process's writers
STUCK_SECONDS = 1.0  # after a busy lock, queued writers give up at once for this long


class DatabaseBusy(OperationalError, Busy):
    """SQLite's write lock stayed taken for BUSY_SECONDS; the transaction was rolled back."""


def _busy(exc: OperationalError) -> DatabaseBusy:
    return DatabaseBusy(exc.statement, exc.params, exc.orig)


def _queued_busy() -> DatabaseBusy:
    locked = sqlite3.OperationalError("database is locked (by another program)")
    return DatabaseBusy("BEGIN IMMEDIATE", None, locked)


def _is_locked(exc: OperationalError) -> bool:
    text = str(exc.orig).lower()
    return "database is locked" in text or "database table is locked" in text or "busy" in text


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _prepare_sqlite_file(path: Path) -> None:
    """Create the directory (0700) and the file (0600) before SQLite does, umask-proof."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA secure_delete=ON")  # overwritten pages are zeroed
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(BUSY_SECONDS * 1000)}")
    cursor.close()


class Database:
    """Owns the engine; hands out sessions. Built once at start-up, disposed at shutdown.

    It carries the program's clock (bot/clock.py): services read `db.clock`, and the
    engine's execution options hand it to the timestamp column defaults (models.utcnow).
    """

    def __init__(self, url: str, *, echo: bool = False, clock: Clock = system_clock) -> None:
        self.url = url
        self.clock = clock
        kwargs: dict[str, Any] = {"echo": echo, "execution_options": {"clock": clock}}
        path = sqlite_path(url)
        self.is_sqlite = url.startswith("sqlite")
        if path is not None:
            _prepare_sqlite_file(path)
        if not self.is_sqlite:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._writers = asyncio.Lock() if self.is_sqlite else None
        self._stuck_until = 0.0  # monotonic time until which the lock counts as held outside

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on success, rolled back on error."""
        try:
            async with self.sessions() as session, session.begin():
                yield session
        except DatabaseBusy:
            raise
        except OperationalError as exc:
            if self.is_sqlite and _is_locked(exc):
                raise _busy(exc) from exc
            raise

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session for a transaction that writes: on SQLite, in turn and BEGIN IMMEDIATE.

        Same as `session()` on PostgreSQL (row locks, no database-wide writer).
        """
        if self._writers is None:
            async with self.session() as session:
                yield session
            return
        try:
            async with asyncio.timeout(QUEUE_SECONDS):
                await self._writers.acquire()
        except TimeoutError:
            raise _queued_busy() from None
        if time.monotonic() < self._stuck_until:  # the writer before us found it locked
            self._writers.release()
            raise _queued_busy()
        try:
            async with self.session() as session:
                connection = await session.connection()
                await connection.exec_driver_sql("BEGIN IMMEDIATE")
                yield session
        except DatabaseBusy:
            self._stuck_until = max(self._stuck_until, time.monotonic() + STUCK_SECONDS)
            raise
        finally:
            self._writers.release()

    async def checkpoint(self) -> None:
        """Fold the SQLite WAL into the main file and truncate it (old pages gone)."""
        if self.is_sqlite:
            async with self.engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    async def dispose(self) -> None:
        await self.engine.dispose()
