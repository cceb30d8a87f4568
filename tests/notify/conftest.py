"""The relay's world: a real ledger (SQLite file, or PostgreSQL for `pg_ledger`, on a clock the test moves),
the sandbox's fake Telegram Bot API over HTTP, and the Telegram client pointed at it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from ledger import Ledger, upgrade
from notify import TelegramClient
from runtime import devdefaults
from tests.ledger.conftest import clear, pg_url  # noqa: F401 - a fixture, found by name
from tests.sandbox_fixtures import (  # noqa: F401 - fixtures are found by name
    SandboxHandle,
    sandbox,
    sandbox_server,
)


class Clock:
    """The ledger's clock: real time, moved ahead by hand (a back-off passes without waiting for it)."""

    def __init__(self) -> None:
        self.ahead = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead

    def advance(self, pause: timedelta) -> None:
        self.ahead += pause


@pytest.fixture(scope="session")
async def notify_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('notify') / 'ledger.db'}"
    await asyncio.to_thread(upgrade, url)
    return url


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def ledger(notify_db: str, clock: Clock) -> AsyncIterator[Ledger]:
    led = Ledger.from_url(notify_db, clock=clock)
    await clear(led)
    try:
        yield led
    finally:
        await led.aclose()


@pytest.fixture
async def pg_ledger(pg_url: str, clock: Clock) -> AsyncIterator[Ledger]:  # noqa: F811 - the fixture
    led = Ledger.from_url(pg_url, clock=clock)
    await clear(led)
    try:
        yield led
    finally:
        await led.aclose()


@pytest.fixture
async def telegram(sandbox: SandboxHandle) -> AsyncIterator[TelegramClient]:  # noqa: F811 - the fixture
    client = TelegramClient(f"{sandbox.base_url}/telegram", devdefaults.DEV_TELEGRAM_TOKEN, timeout=5.0)
    try:
        yield client
    finally:
        await client.aclose()
