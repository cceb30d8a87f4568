"""Callbacks posted to the webhook are marked signalled in batches, and what is pending is written when it
stops (webhook.marks)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import event
from temporalio.client import Client

from ledger import Ledger, LedgerUnavailable, upgrade
from payouts.msisdn import vault_from_settings
from runtime.settings import Settings
from runtime.signing import signature_headers
from tests.callbacks import paid
from tests.ledger.helpers import reserved
from tests.stack import free_port, stack_settings
from webhook.app import Listeners, start_webhook
from webhook.deps import WebhookDeps
from webhook.marks import SignalledMarks


class _Handle:
    def __init__(self, signals: list[str], workflow_id: str) -> None:
        self._signals = signals
        self._id = workflow_id

    async def signal(self, *_args: Any) -> None:
        self._signals.append(self._id)


class _Temporal:
    """Accepts every signal (the workflow's side is not what is tested here)."""

    def __init__(self) -> None:
        self.signals: list[str] = []

    def get_workflow_handle(self, workflow_id: str) -> _Handle:
        return _Handle(self.signals, workflow_id)


class _MarkCount:
    def __init__(self, ledger: Ledger) -> None:
        self.statements = 0
        event.listen(ledger.engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("UPDATE callbacks SET signalled_at"):
            self.statements += 1


@asynccontextmanager
async def _webhook(
    tmp: Path, temporal: _Temporal, grace: float = 0.5
) -> AsyncIterator[tuple[Settings, Ledger, Listeners]]:
    """The webhook's listeners; `grace`: the redelivery sweep's (a mark waits at most a quarter of it)."""
    settings = stack_settings(
        tmp, sandbox_port=free_port(), webhook_port=0, internal_port=0, task_queue=f"marks-{uuid.uuid4().hex[:8]}"
    )
    webhook = settings.webhook.model_copy(update={"redeliver_after_seconds": grace})
    settings = settings.model_copy(update={"webhook": webhook})
    await asyncio.to_thread(upgrade, settings.ledger.url)
    ledger = Ledger.from_url(settings.ledger.url)
    vault = vault_from_settings(settings.crypto.fernet_key_list(), settings.crypto.hmac_key.get_secret_value())
    deps = WebhookDeps(settings=settings, ledger=ledger, temporal=cast(Client, temporal), vault=vault)
    listeners = await start_webhook(deps, "127.0.0.1", 0, "127.0.0.1", 0)
    try:
        yield settings, ledger, listeners
    finally:
        await listeners.cleanup()
        await ledger.aclose()


async def _post(http: httpx.AsyncClient, settings: Settings, port: int, body: bytes) -> int:
    signed = signature_headers(settings.webhook.callback_secret_list()[:1], body)
    headers = {"Content-Type": "application/xml", **signed}
    resp = await http.post(f"http://127.0.0.1:{port}/portmone/callback", content=body, headers=headers)
    return resp.status_code


async def test_a_burst_of_callbacks_is_marked_signalled_in_fewer_transactions(tmp_path: Path) -> None:
    temporal = _Temporal()
    async with _webhook(tmp_path, temporal) as (settings, ledger, listeners), httpx.AsyncClient(timeout=10) as http:
        payouts = []
        for i in range(30):
            pid = await reserved(ledger)
            await ledger.callbacks.set_bill_id(pid, f"B-{i}")
            payouts.append(pid)
        marks = _MarkCount(ledger)
        answers = await asyncio.gather(
            *(_post(http, settings, listeners.public_port, paid(f"B-{i}")) for i in range(30))
        )
        assert answers == [200] * 30
        assert sorted(temporal.signals) == sorted(payouts)
        async with asyncio.timeout(5):
            while not all([(await ledger.callbacks.for_payout(p))[0].signalled_at for p in payouts]):
                await asyncio.sleep(0.02)
        assert 1 <= marks.statements < 30
        assert await ledger.callbacks.to_redeliver(stored_before=_far_future()) == []


async def test_pending_marks_are_written_when_the_webhook_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("webhook.marks.MARK_INTERVAL_SECONDS", 3600.0)  # no timed flush within the test
    temporal = _Temporal()
    hook = _webhook(tmp_path, temporal, grace=3600 * 4)
    async with hook as (settings, ledger, listeners), httpx.AsyncClient(timeout=10) as http:
        pids = []
        for i in range(3):
            pid = await reserved(ledger)
            await ledger.callbacks.set_bill_id(pid, f"B-stop-{i}")
            pids.append(pid)
        marks = _MarkCount(ledger)
        for i in range(3):
            assert await _post(http, settings, listeners.public_port, paid(f"B-stop-{i}")) == 200
        await asyncio.sleep(0.2)
        assert marks.statements == 0
        assert len(await ledger.callbacks.to_redeliver(stored_before=_far_future())) == 3
        await listeners.cleanup()  # the webhook stops: one statement writes all three
        assert marks.statements == 1
        assert all([(await ledger.callbacks.for_payout(p))[0].signalled_at for p in pids])


async def test_marks_a_ledger_could_not_take_are_kept_for_the_next_flush() -> None:
    class Callbacks:
        def __init__(self) -> None:
            self.down = True
            self.marked: list[tuple[int, ...]] = []

        async def mark_signalled(self, *ids: int) -> None:
            if self.down:
                raise LedgerUnavailable("ledger database unavailable: down for the test")
            self.marked.append(ids)

    class FakeLedger:
        callbacks = Callbacks()

    fake = FakeLedger()
    marks = SignalledMarks(cast(Ledger, fake), interval=0.01, batch=2, hold=4, retry=0.01)
    for callback_id in range(1, 7):
        marks.add(callback_id)
    assert marks.pending == 4  # the oldest two dropped: the sweep re-signals them
    marks.start()
    await asyncio.sleep(0.1)
    assert marks.pending == 4 and fake.callbacks.marked == []  # still held while the ledger is down
    fake.callbacks.down = False
    async with asyncio.timeout(5):
        while marks.pending:
            await asyncio.sleep(0.01)
    await marks.close()
    assert fake.callbacks.marked == [(3, 4), (5, 6)]


def _far_future() -> datetime:
    return datetime(2999, 1, 1, tzinfo=UTC)
