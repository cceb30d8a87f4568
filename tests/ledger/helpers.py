"""Helpers shared by the ledger tests."""

from __future__ import annotations

import hashlib
import itertools
import os
import secrets
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import Ledger, OutboxDelivery, ReserveRequest, StoreCallbackResult

PG_ADMIN_URL = os.environ.get("PAYOUTS_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
DAY = date(2025, 11, 27)
_ids = itertools.count(1)


def make_req(**overrides: Any) -> ReserveRequest:
    n = next(_ids)
    receipt = overrides.pop("receipt_id", f"R{n}")
    base = ReserveRequest(
        payout_id=f"payout-{receipt}",
        receipt_id=receipt,
        fiscal_key=None,
        user_key=f"{n:064x}",
        masked_msisdn="+380•••••67",
        telegram_id=5_000_000_000 + n,
        amount_kopecks=2_500,
        currency="UAH",
        payee_id="payee-1",
        owner=f"run-{receipt}",
        business_day=DAY,
        user_daily_limit=3,
        daily_budget_kopecks=10_000_000,
        max_payout_kopecks=100_000,
    )
    return replace(base, **overrides)


async def reserved(ledger: Ledger, **overrides: Any) -> str:
    """Reserve a payout that must be accepted; returns its id."""
    result = await ledger.payouts.reserve(make_req(**overrides))
    assert result.accepted, result
    return result.payout_id


async def claim_channel(
    ledger: Ledger, channel: str, *, limit: int = 10, lease: timedelta = timedelta(seconds=60)
) -> list[OutboxDelivery]:
    """One channel's due events, claimed as a relay pass over that channel alone claims them."""
    return (await ledger.outbox.claim([channel], limit=limit, lease=lease)).batches[channel]


async def confirm_no_bill(ledger: Ledger, pid: str, attempt_ids: list[int], key: str, action: str = "retry") -> None:
    """An operator confirms that Portmone holds no bill for these attempts, as the ledger lists them now."""
    shown = {bill.attempt_id: bill.evidence for bill in await ledger.attempts.open_bills(pid)}
    await ledger.operator_actions.record(
        payout_id=pid, action=action, operator="olena", reason="cabinet checked", idempotency_key=key,
        confirms=[(attempt_id, shown[attempt_id]) for attempt_id in attempt_ids],
    )  # fmt: skip


class PgAdmin:
    """Creates throwaway databases on the test server and drops them all at the end of the session."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.created: list[str] = []

    async def create_database(self) -> str:
        name = f"payouts_test_{secrets.token_hex(6)}"
        async with self.engine.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    async def drop_all(self) -> None:
        async with self.engine.connect() as conn:
            for name in self.created:
                await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def store_callback(ledger: Ledger, bill_id: str | None, body: str) -> StoreCallbackResult:
    """A PAYED callback with this body (its hash is the dedupe key), stored as the webhook stores one."""
    return await ledger.callbacks.store(
        dedupe_key=hashlib.sha256(body.encode()).hexdigest(),
        bill_id=bill_id,
        raw_body=body,
        rsp_status="ok",
        bill_status="PAYED",
        error_code=None,
        error_description=None,
        verdict="paid",
    )
