"""Engines for the two supported backends, set up the way the ledger relies on.

SQLite (aiosqlite): WAL, a busy timeout, foreign keys on, and transactions that the ledger begins
itself: `BEGIN IMMEDIATE` for writers (so they serialize instead of failing to upgrade a read lock)
and a plain deferred `BEGIN` for readers. PostgreSQL (asyncpg): a bounded pool that never hands out a
connection the server closed (`_on_pg_checkout`).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, PoolProxiedConnection

SQLITE_BUSY_TIMEOUT_MS = 15_000
PG_CONNECT_TIMEOUT_S = 5.0
# Below the ledger activities' start-to-close (30 s): a write that waits on a lock, or a statement
# that runs away, fails (LedgerUnavailable, retried) before Temporal gives up on the attempt, so a
# timed-out attempt never lingers to race its own retry.
PG_LOCK_TIMEOUT_MS = 5_000
PG_STATEMENT_TIMEOUT_MS = 15_000
# A pooled connection idle for longer than this is pinged before use (a round trip to the server); one
# used more recently is only checked for a closed socket, which costs nothing (docs/performance.md).
PG_PING_AFTER_IDLE_S = 5.0
_CHECKED_IN_AT = "payouts_checked_in_at"
# execution option that asks for `BEGIN IMMEDIATE` on SQLite (ignored elsewhere)
WRITE_OPTION = "ledger_write"
_BEGIN = {True: "BEGIN IMMEDIATE", False: "BEGIN"}


def sqlite_file(url: str | URL) -> Path | None:
    """The database file of a SQLite URL, or None for PostgreSQL and in-memory databases."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return None
    db = u.database or ""
    if db in ("", ":memory:") or db.startswith("file:") or u.query.get("mode") == "memory":
        return None
    return Path(db)


def ensure_sqlite_parent(url: str | URL) -> None:
    path = sqlite_file(url)
    if path is not None:
        # on failure the first connection reports it (as LedgerUnavailable)
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)


def _on_sqlite_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # Stop the driver from issuing its own BEGIN; `_on_sqlite_begin` does it.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS:d}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=FULL")
    finally:
        cursor.close()


def _on_sqlite_begin(conn: Connection) -> None:
    write = bool(conn.get_execution_options().get(WRITE_OPTION, False))
    conn.exec_driver_sql(_BEGIN[write])


def _on_pg_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info[_CHECKED_IN_AT] = time.monotonic()


def _on_pg_checkout(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection) -> None:
    """Refuse a pooled connection that cannot serve: the pool then opens a new one.

    SQLAlchemy's own pre-ping costs three round trips on every checkout with asyncpg (BEGIN, a query,
    ROLLBACK). Instead: a connection whose socket the server closed (a restart, a terminated backend,
    an idle timeout) is known to asyncpg once the event loop has read the close, so a busy pool pays
    nothing; a connection idle for PG_PING_AFTER_IDLE_S (where a silently dropped one hides) still gets
    the ping. A connection that dies between the check and its use fails that one transaction, as it
    could after a ping: the ledger reports LedgerUnavailable and its callers retry."""
    if proxy.driver_connection is None or proxy.driver_connection.is_closed():
        raise exc.DisconnectionError("the server closed this pooled connection")
    checked_in_at = record.info.get(_CHECKED_IN_AT)
    if checked_in_at is not None and time.monotonic() - checked_in_at >= PG_PING_AFTER_IDLE_S:
        try:
            dbapi_connection.ping()
        except Exception as error:
            raise exc.DisconnectionError(f"a pooled connection idle for a while did not answer: {error}") from error


def make_engine(url: str | URL, *, null_pool: bool = False, **kwargs: Any) -> AsyncEngine:
    """An AsyncEngine for `sqlite+aiosqlite://` or `postgresql+asyncpg://` URLs."""
    u = make_url(url)
    backend = u.get_backend_name()
    if null_pool:
        kwargs["poolclass"] = NullPool
    if backend == "sqlite":
        ensure_sqlite_parent(u)
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, **kwargs.pop("connect_args", {})}
        engine = create_async_engine(u, connect_args=connect_args, **kwargs)
        event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
        event.listen(engine.sync_engine, "begin", _on_sqlite_begin)
        return engine
    if backend == "postgresql":
        connect_args = {
            "timeout": PG_CONNECT_TIMEOUT_S,
            "server_settings": {
                "application_name": "payouts-ledger",
                "lock_timeout": str(PG_LOCK_TIMEOUT_MS),
                "statement_timeout": str(PG_STATEMENT_TIMEOUT_MS),
            },
            **kwargs.pop("connect_args", {}),
        }
        if not null_pool:
            kwargs.setdefault("pool_size", 10)
            kwargs.setdefault("max_overflow", 10)
            kwargs.setdefault("pool_timeout", 10)
            kwargs.setdefault("pool_recycle", 1800)
        engine = create_async_engine(u, connect_args=connect_args, **kwargs)
        if not null_pool:
            event.listen(engine.sync_engine, "checkin", _on_pg_checkin)
            event.listen(engine.sync_engine, "checkout", _on_pg_checkout)
        return engine
    raise ValueError(f"the ledger supports sqlite+aiosqlite and postgresql+asyncpg URLs, not {backend!r}")
