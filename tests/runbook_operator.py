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


async def follow_runbook(
    client: Client, http: httpx.AsyncClient, sandbox_url: str, receipt_id: str, *, prefer_retry: bool,
    operator: str = "duty",
) -> OperatorResult | None:
    """Decide on a payout in manual review: paid in the cabinet → mark_paid; telecom_failed → retry the
    top-up; otherwise cancel every open bill in the cabinet, then retry or cancel with the confirmation.
    Returns the answer, or None when there was nothing to decide or the decision was refused."""
    view = await view_of(client, receipt_id)
    if view is None or view.status != PayoutStatus.MANUAL_REVIEW:
        return None
    bills = await receipt_bills(http, sandbox_url, receipt_id)
    paid = [b for b in bills if b["status"] == "PAYED"]
    cmd: OperatorRetry | OperatorMarkPaid | OperatorCancel
    if view.escalation_reason == "telecom_failed":
        name, cmd = UpdateName.RETRY, OperatorRetry(operator=operator, reason="telecom API back")
    elif paid:
        name, cmd = UpdateName.MARK_PAID, OperatorMarkPaid(operator=operator, reason="paid per cabinet",
                                                  external_reference=paid[0]["bill_id"])
    else:
        for bill in bills:
            if bill["status"] == "CREATED":
                await http.post(f"{sandbox_url}/_sandbox/bills/{bill['bill_id']}/cancel",
                                json={"reason": "runbook: open bill cancelled before deciding"})
        if prefer_retry:
            name, cmd = UpdateName.RETRY, OperatorRetry(operator=operator, reason="no live bill in cabinet",
                                               confirmed_no_bill_at_portmone=True)
        else:
            name, cmd = UpdateName.CANCEL, OperatorCancel(operator=operator, reason="giving up",
                                                 confirmed_no_bill_at_portmone=True)
    handle = client.get_workflow_handle(payout_workflow_id(receipt_id))
    try:
        async with asyncio.timeout(20):
            result: OperatorResult = await handle.execute_update(name, cmd, result_type=OperatorResult)
    except (WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError, TimeoutError, RPCError):
        return None  # refused (the validator's words) or not answered yet: the operator comes back later
    return result
