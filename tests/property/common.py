"""What the two state machines share: the loop thread that runs the asynchronous stack for Hypothesis'
synchronous rules, the actors both play (Portmone's late notices, the telecom API, operators who look
and decide later), and the end of a run (faults stop, the payouts quiet down, the promises are checked,
the operators work through the queue, the promises are checked again)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from temporalio.client import WorkflowExecutionStatus

from payouts.models import payout_workflow_id
from tests.promises import SETTLED, breaches, money_breaches
from tests.runbook_operator import Decision, decide, follow_runbook, look, receipt_bills, view_of
from tests.stack import Stack

T = TypeVar("T")


class LoopThread:
    """An event loop in its own thread: Hypothesis' state machines are synchronous, the stack is not."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="property-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 180) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Players:
    """The actors both machines play on a stack, and the promises they check."""

    def __init__(self, stack: Stack, submitted: list[str]) -> None:
        self.stack = stack
        self.submitted = submitted
        self.looked: dict[str, Decision] = {}  # what an operator decided on, not sent yet
        self.decided: dict[str, int] = {}

    async def late_created_notice(self, receipt: str) -> None:
        """A stale CREATED callback for one of the receipt's bills (new evidence for a confirmation)."""
        for bill in await receipt_bills(self.stack.http, self.stack.sandbox_url, receipt):
            await self.stack.http.post(f"{self.stack.sandbox_url}/_sandbox/bills/{bill['bill_id']}/callback",
                                       json={"status": "CREATED"})  # fmt: skip
            return

    async def portmone_pays_late(self, receipt: str) -> None:
        for bill in await receipt_bills(self.stack.http, self.stack.sandbox_url, receipt):
            if bill["status"] == "CREATED":
                await self.stack.paid_at_portmone(bill["bill_id"])
                return

    async def telecom_fails_next(self, status: int) -> None:
        """The next top-up fails (503: retried; 400: refused for good), perhaps during a late callback."""
        await self.stack.faults({"telecom_fail": {"times": 1, "status": status}})

    async def operate(self, receipt: str, prefer_retry: bool) -> None:
        """An operator follows the runbook at once."""
        result = await follow_runbook(self.stack.client, self.stack.http, self.stack.sandbox_url, receipt,
                                      prefer_retry=prefer_retry)  # fmt: skip
        if result is not None:
            self.decided[receipt] = self.decided.get(receipt, 0) + 1

    async def look(self, receipt: str, prefer_retry: bool) -> None:
        """An operator makes up their mind from what the cabinet and the payout show now…"""
        decision = await look(self.stack.client, self.stack.http, self.stack.sandbox_url, receipt,
                              prefer_retry=prefer_retry)  # fmt: skip
        if decision is not None:
            self.looked[receipt] = decision

    async def decide_later(self, receipt: str) -> None:
        """…and sends it later, whatever happened meanwhile (a late answer, a callback, a Reset)."""
        if await decide(self.stack.client, receipt, self.looked.pop(receipt)) is not None:
            self.decided[receipt] = self.decided.get(receipt, 0) + 1

    async def money_breaches(self) -> list[str]:
        found: list[str] = []
        for receipt in self.submitted:
            found += await money_breaches(self.stack.ledger, self.stack.http, self.stack.sandbox_url,
                                          self.stack.client, receipt)  # fmt: skip
        return found

    async def quiet(self) -> bool:
        """Every payout settled (or waiting for a person), with nothing in flight."""
        for receipt in self.submitted:
            described = await self.stack.client.get_workflow_handle(payout_workflow_id(receipt)).describe()
            if described.status != WorkflowExecutionStatus.RUNNING:
                continue
            raw = described.raw_description
            if raw.pending_activities or raw.HasField("pending_workflow_task"):
                return False
            view = await view_of(self.stack.client, receipt)
            if view is None or view.status not in SETTLED:
                return False
        return True

    async def check(self) -> None:
        found = await breaches(self.stack.ledger, self.stack.http, self.stack.sandbox_url, self.stack.client,
                               self.submitted)  # fmt: skip
        assert not found, "\n".join(found)

    def after_the_run(self, run: Callable[..., Any], quiesce: Callable[[], Awaitable[None]]) -> None:
        """Faults stop and the payouts quiet down: every promise holds; then the operators work through the
        queue, and every promise still holds."""
        if not self.submitted:
            return
        run(quiesce(), timeout=300)
        run(self.check())
        for n, receipt in enumerate(self.submitted):
            run(self.operate(receipt, prefer_retry=n % 2 == 0))
        run(quiesce(), timeout=300)
        run(self.check())
