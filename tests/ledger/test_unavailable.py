from __future__ import annotations

from pathlib import Path

import pytest

from ledger import Ledger, LedgerError, LedgerUnavailable
from tests.ledger.helpers import PgAdmin, make_req


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://postgres@127.0.0.1:1/nothing_listens_here",
        "postgresql+asyncpg://postgres@127.0.0.1:5432/payouts_no_such_database",
    ],
)
async def test_unreachable_postgres_raises_ledger_unavailable(url: str) -> None:
    ledger = Ledger.from_url(url)
    try:
        with pytest.raises(LedgerUnavailable):
            await ledger.ping()
        with pytest.raises(LedgerUnavailable) as info:
            await ledger.reserve(make_req())
        assert isinstance(info.value, LedgerError)
        assert "ledger database unavailable" in str(info.value)
    finally:
        await ledger.aclose()


async def test_unopenable_sqlite_file_raises_ledger_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the directory should be")
    ledger = Ledger.from_url(f"sqlite+aiosqlite:///{blocker / 'ledger.db'}")
    try:
        with pytest.raises(LedgerUnavailable):
            await ledger.ping()
        with pytest.raises(LedgerUnavailable):
            await ledger.get_payout("payout-R1")
    finally:
        await ledger.aclose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_unmigrated_database_is_unavailable_not_a_crash(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "postgres":
        admin: PgAdmin = request.getfixturevalue("pg_admin")
        url = await admin.create_database()
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    ledger = Ledger.from_url(url)
    try:
        await ledger.ping()
        with pytest.raises(LedgerUnavailable, match="payouts"):
            await ledger.get_payout("payout-R1")
    finally:
        await ledger.aclose()
