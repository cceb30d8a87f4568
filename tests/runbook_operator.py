"""An operator who follows docs/runbook.md, with the sandbox as Portmone's cabinet.

Used by the property test and the soak: it is how a careful person acts on a payout in manual
review, so any double payment that follows is the service's fault, not the operator's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from temporalio.client import Client, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError

from payouts.models import (
    OperatorCancel,
    OperatorMarkPaid,
    OperatorResult,
    OperatorRetry,
    PayoutView,
    bill_comment,
    payout_workflow_id,
)
from payouts.names import STATUS_QUERY, UpdateName
from payouts.status import PayoutStatus


async def receipt_bills(http: httpx.AsyncClient, sandbox_url: str, receipt_id: str) -> list[dict[str, Any]]:
    """The receipt's bills as Portmone's cabinet shows them (found by the bill comment)."""
    resp = await http.get(f"{sandbox_url}/_sandbox/bills", params={"comment": bill_comment(receipt_id)})
    resp.raise_for_status()
    return list(resp.json()["bills"])


async def view_of(client: Client, receipt_id: str) -> PayoutView | None:
    try:
        handle = client.get_workflow_handle(payout_workflow_id(receipt_id))
        view: PayoutView = await handle.query(STATUS_QUERY, result_type=PayoutView)
    except Exception:  # not answering right now (a task in flight, a worker restarting)
        return None
    return view


Decision = tuple[UpdateName, OperatorRetry | OperatorMarkPaid | OperatorCancel]


async def look(
    client: Client, http: httpx.AsyncClient, sandbox_url: str, receipt_id: str, *, prefer_retry: bool,
    operator: str = "duty",
) -> Decision | None:
    """What a careful operator decides on a payout in manual review, as docs/runbook.md says, from what the
    cabinet shows now: paid in the cabinet → mark_paid (the paid bill as reference); telecom_failed → retry
    the top-up; otherwise cancel every open bill in the cabinet, then retry or cancel with the confirmation.
    None when there is nothing to decide."""
    view = await view_of(client, receipt_id)
    if view is None or view.status != PayoutStatus.MANUAL_REVIEW:
        return None
    bills = await receipt_bills(http, sandbox_url, receipt_id)
    paid = [b for b in bills if b["status"] == "PAYED"]
    if view.escalation_reason == "telecom_failed":
        return UpdateName.RETRY, OperatorRetry(operator=operator, reason="telecom API back")
    if paid:
        return UpdateName.MARK_PAID, OperatorMarkPaid(operator=operator, reason="paid per cabinet",
                                                      external_reference=paid[0]["bill_id"])  # fmt: skip
    for bill in bills:
        if bill["status"] == "CREATED":
            await http.post(f"{sandbox_url}/_sandbox/bills/{bill['bill_id']}/cancel",
                            json={"reason": "runbook: open bill cancelled before deciding"})  # fmt: skip
    if prefer_retry:
        return UpdateName.RETRY, OperatorRetry(operator=operator, reason="no live bill in cabinet",
                                               confirmed_no_bill_at_portmone=True)  # fmt: skip
    return UpdateName.CANCEL, OperatorCancel(operator=operator, reason="giving up", confirmed_no_bill_at_portmone=True)


async def decide(client: Client, receipt_id: str, decision: Decision) -> OperatorResult | None:
    """Send the decision (perhaps long after the look that made it: the payout may have moved on). The
    answer, or None when it was refused (the validator's words) or not answered in time."""
    name, cmd = decision
    handle = client.get_workflow_handle(payout_workflow_id(receipt_id))
    try:
        async with asyncio.timeout(20):
            result: OperatorResult = await handle.execute_update(name, cmd, result_type=OperatorResult)
    except (WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError, TimeoutError, RPCError):
        return None  # refused, or not answered yet: the operator comes back later
    return result


async def follow_runbook(
    client: Client, http: httpx.AsyncClient, sandbox_url: str, receipt_id: str, *, prefer_retry: bool,
    operator: str = "duty",
) -> OperatorResult | None:
    """Look, then decide at once. Returns the answer, or None when there was nothing to decide or the
    decision was refused."""
    decision = await look(client, http, sandbox_url, receipt_id, prefer_retry=prefer_retry, operator=operator)
    return None if decision is None else await decide(client, receipt_id, decision)
