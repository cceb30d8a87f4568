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
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "40", "53", "57", "58", "28", "3D", "42P01")


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
                    await stack.enter_async_context(self._sqlite_writer)
                conn = await stack.enter_async_context(self.engine.connect())
                if write:
                    await conn.execution_options(**{WRITE_OPTION: True})
                async with conn.begin():
                    yield conn
        except (sa_exc.SQLAlchemyError, OSError, TimeoutError) as exc:
            if _is_unavailable(exc):
                raise LedgerUnavailable(_describe(exc)) from exc
            raise

    def write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self.transaction(write=True)

    def read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self.transaction(write=False)
