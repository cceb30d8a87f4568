"""Alembic environment for the ledger: async engines (aiosqlite, asyncpg), URL from `config.attributes`."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from ledger.engine import WRITE_OPTION, make_engine
from ledger.schema import metadata

config = context.config


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: use ledger.migrate.upgrade(url)")
    return str(url)


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=metadata,
        compare_type=True,
        # SQLite DDL is transactional; our engine begins transactions explicitly.
        transactional_ddl=True,
        **kwargs,
    )


def run_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = make_engine(_url(), null_pool=True)
    try:
        async with engine.connect() as connection:
            await connection.execution_options(**{WRITE_OPTION: True})
            await connection.run_sync(_run_sync)
    finally:
        await engine.dispose()


def run_online() -> None:
    existing = config.attributes.get("connection")
    if isinstance(existing, Connection):
        _run_sync(existing)
    else:
        asyncio.run(_run_async())


if context.is_offline_mode():
    run_offline()
else:
    run_online()
