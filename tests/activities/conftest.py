"""A real SQLite ledger for the activity tests (Temporal's ActivityEnvironment runs the activities)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ledger import Ledger, upgrade


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    await asyncio.to_thread(upgrade, url)
    led = Ledger.from_url(url)
    yield led
    await led.aclose()
