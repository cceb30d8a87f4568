"""Transactions and error translation shared by the ledger operations (internal)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger.engine import WRITE_OPTION
from ledger.errors import LedgerUnavailable

Clock = Callable[[], datetime]

# SQLSTATE classes that mean "the database can't serve us right now": connection exception,
# transaction rollback (serialization failure, deadlock), insufficient resources, operator
# intervention (shutdown), system error, invalid authorization, unknown database.
# 42P01 (undefined table) means an unmigrated database: also "not servable now", like SQLite's
# OperationalError "no such table".
# 55P03 (lock_not_available) is `lock_timeout` firing: another transaction holds the row; try later.
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "40", "53", "55P03", "57", "58", "28", "3D", "42P01")
# How long a writer waits for this process's SQLite writer queue before saying the ledger is busy;
# with the busy timeout below, a write gives up well inside an activity's start-to-close (30 s).
SQLITE_QUEUE_WAIT_SECONDS = 10.0


def utc_now() -> datetime:
    return datetime.now(UTC)


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, OSError | TimeoutError | sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        return isinstance(sqlstate, str) and sqlstate.startswith(_TRANSIENT_SQLSTATE_PREFIXES)
    return False


def _describe(exc: BaseException) -> str:
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    return f"ledger database unavailable: {type(orig).__name__}: {orig}"


class Db:
    """An engine plus the clock; hands out read and write transactions."""

    def __init__(self, engine: AsyncEngine, clock: Clock = utc_now) -> None:
        self.engine = engine
        self.clock = clock
        self.dialect = engine.dialect.name
        # SQLite has one writer at a time, and its busy handler sleeps up to 100 ms between
        # tries. Queueing this process's writers here wakes the next one the moment the lock is
        # free; other processes still meet the busy timeout.
        self._sqlite_writer = asyncio.Lock() if self.dialect == "sqlite" else None

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def now(self) -> datetime:
        return self.clock()

    @asynccontextmanager
    async def transaction(self, *, write: bool) -> AsyncIterator[AsyncConnection]:
        """One transaction: commit on success, roll back on any exception.

        Writers take SQLite's write lock at BEGIN (IMMEDIATE); PostgreSQL writers lock rows
        explicitly. Connection-level failures become LedgerUnavailable.
        """
        try:
            async with contextlib.AsyncExitStack() as stack:
                if write and self._sqlite_writer is not None:
                    await self._queue_for_writer(stack)
                conn = await stack.enter_async_context(self.engine.connect())
                if write:
                    await conn.execution_options(**{WRITE_OPTION: True})
                async with conn.begin():
                    yield conn
        except (sa_exc.SQLAlchemyError, OSError, TimeoutError) as exc:
            if _is_unavailable(exc):
                raise LedgerUnavailable(_describe(exc)) from exc
            raise

    @asynccontextmanager
    async def statement(self) -> AsyncIterator[AsyncConnection]:
        """A writer whose every statement is a transaction of its own: one round trip a statement.

        PostgreSQL: the connection is in autocommit, so neither BEGIN nor COMMIT goes to the server
        (asyncpg sends the statement alone; the server commits it when it ends). Use it for one
        statement that must stand alone, which every statement here then does: a second one sees what
        the first committed, nothing is rolled back. SQLite: an ordinary write transaction (BEGIN
        IMMEDIATE, the statements, COMMIT: in process, no round trips), behind this process's writer
        queue. Connection-level failures become LedgerUnavailable.
        """
        if not self.is_postgres:
            async with self.write() as conn:
                yield conn
            return
        try:
            async with self.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                async with conn.begin():  # nothing on the wire in autocommit: SQLAlchemy's bookkeeping
                    yield conn
        except (sa_exc.SQLAlchemyError, OSError, TimeoutError) as exc:
            if _is_unavailable(exc):
                raise LedgerUnavailable(_describe(exc)) from exc
            raise

    async def _queue_for_writer(self, stack: contextlib.AsyncExitStack) -> None:
        assert self._sqlite_writer is not None
        try:
            async with asyncio.timeout(SQLITE_QUEUE_WAIT_SECONDS):
                await self._sqlite_writer.acquire()
        except TimeoutError:
            raise LedgerUnavailable(
                f"ledger busy: no SQLite write slot within {SQLITE_QUEUE_WAIT_SECONDS:g} s"
            ) from None
        stack.callback(self._sqlite_writer.release)

    def write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self.transaction(write=True)

    def read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self.transaction(write=False)


class Operations:
    """A group of ledger operations bound to the database (`Ledger` composes them). Each public method
    is one transaction; what runs inside another's transaction is a module function taking `conn`."""

    def __init__(self, db: Db) -> None:
        self._db = db
