"""The service's money promises, stated once as checks over the whole system, for the property tests and
the soak: Portmone's own record (the sandbox), the ledger, and every run of every payout workflow.

- at most one paid bill per receipt;
- no CANCELLED or REJECTED payout while a stored callback says one of its bills is paid, and a bill that
  Portmone paid belongs to a payout that is PAID or waits for a person;
- every PAID payout has exactly one paid bill behind it, its ledger row names that bill (or its operator's
  reference does), and the PortmoneBillId search attribute names the row's bill;
- no payout workflow failed, timed out, was cancelled or terminated, and a closed workflow and its ledger
  row agree;
- no update was accepted and then left unanswered (every run's history);
- every receipt is settled, or waits in MANUAL_REVIEW with a known reason whose evidence lists every bill
  that may still hold money (open or paid at Portmone);
- each run's history stays under a bound, however long an outage lasted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from ledger import Ledger
from payouts import escalation
from payouts import search_attributes as sa
from payouts.models import PayoutView, payout_workflow_id
from payouts.status import TERMINAL
from payouts.status import PayoutStatus as S
from payouts.verdicts import Verdict, bill_standing
from tests.runbook_operator import receipt_bills, view_of

SETTLED = TERMINAL | {S.MANUAL_REVIEW}
CLOSED_BADLY = {
    WorkflowExecutionStatus.FAILED,
    WorkflowExecutionStatus.TERMINATED,
    WorkflowExecutionStatus.CANCELED,
    WorkflowExecutionStatus.TIMED_OUT,
}
# Events a run may hold: a long outage or a long wait in manual review continues as new well before this.
HISTORY_BOUND = 3_000
_ACCEPTED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
_COMPLETED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED


async def money_breaches(ledger: Ledger, http: httpx.AsyncClient, sandbox_url: str, client: Client,
                         receipt: str) -> list[str]:  # fmt: skip
    """What may be checked at any moment, even while the payout moves: the money promises."""
    found: list[str] = []
    paid = [b for b in await receipt_bills(http, sandbox_url, receipt) if b["status"] == "PAYED"]
    if len(paid) > 1:
        found.append(f"{receipt}: {len(paid)} paid bills at Portmone: {[b['bill_id'] for b in paid]}")
    row = await ledger.payouts.get(payout_workflow_id(receipt))
    if row is not None and row.status in (S.CANCELLED, S.REJECTED):
        stored = await ledger.callbacks.for_payout(row.id)
        verdicts: dict[str, list[Verdict]] = {}
        for cb in stored:
            if cb.bill_id:
                verdicts.setdefault(cb.bill_id, []).append(Verdict(cb.verdict) if cb.verdict else Verdict.UNKNOWN)
        paid_stored = [bill for bill, seen in verdicts.items() if bill_standing(seen) == "paid"]
        if paid_stored:
            found.append(f"{receipt}: {row.status.value} while a stored callback says bill {paid_stored[0]} was paid")
    return found


async def breaches(ledger: Ledger, http: httpx.AsyncClient, sandbox_url: str, client: Client,
                   receipts: Iterable[str]) -> list[str]:  # fmt: skip
    """Every promise, for receipts whose payouts have quieted down (settled, or waiting for a person)."""
    found: list[str] = []
    for receipt in receipts:
        found += await money_breaches(ledger, http, sandbox_url, client, receipt)
        found += await _settled_breaches(ledger, http, sandbox_url, client, receipt)
        found += await _history_breaches(client, payout_workflow_id(receipt))
    return found


async def _settled_breaches(ledger: Ledger, http: httpx.AsyncClient, sandbox_url: str, client: Client,
                            receipt: str) -> list[str]:  # fmt: skip
    found: list[str] = []
    handle = client.get_workflow_handle(payout_workflow_id(receipt))
    described = await handle.describe()
    if described.status in CLOSED_BADLY:
        found.append(f"{receipt}: workflow {described.status.name}")
    view = await view_of(client, receipt)
    if view is None:
        return [*found, f"{receipt}: the workflow does not answer"]
    if view.status not in SETTLED:
        return [*found, f"{receipt}: stuck in {view.status.value}"]
    bills = await receipt_bills(http, sandbox_url, receipt)
    paid = [b["bill_id"] for b in bills if b["status"] == "PAYED"]
    if paid and view.status not in (S.PAID, S.MANUAL_REVIEW):
        found.append(f"{receipt}: bill {paid[0]} paid at Portmone, payout {view.status.value}")
    if view.status == S.MANUAL_REVIEW:
        found += _evidence_breaches(receipt, view, bills)
    row = await ledger.payouts.get(handle.id)
    if row is None:
        if not (view.status == S.REJECTED and (view.rejection_reason or "").startswith("invalid_data")):
            found.append(f"{receipt}: no ledger row for a {view.status.value} payout")
        return found
    if row.status != view.status:
        found.append(f"{receipt}: ledger {row.status.value} vs workflow {view.status.value}")
    if view.status == S.PAID:
        if len(paid) != 1 and not (row.reason or "").startswith("operator:"):
            found.append(f"{receipt}: PAID with {len(paid)} paid bills at Portmone")
        if paid and row.bill_id != paid[0] and paid[0] not in (row.reason or ""):
            found.append(f"{receipt}: PAID by bill {paid[0]}, the ledger row names {row.bill_id}")
        attribute = described.typed_search_attributes.get(sa.PORTMONE_BILL_ID)
        if row.bill_id and attribute != row.bill_id:
            found.append(f"{receipt}: PortmoneBillId {attribute} vs the ledger row's bill {row.bill_id}")
    return found


def _evidence_breaches(receipt: str, view: PayoutView, bills: list[dict[str, Any]]) -> list[str]:
    found: list[str] = []
    if not escalation.is_known(view.escalation_reason):
        found.append(f"{receipt}: MANUAL_REVIEW without a known reason ({view.escalation_reason})")
    listed = " ".join(view.open_bills)
    unnamed = "no bill id known" in listed
    for bill in bills:
        if bill["status"] in ("CREATED", "PAYED") and bill["bill_id"] not in listed and not unnamed:
            found.append(f"{receipt}: waits for a person, and bill {bill['bill_id']} ({bill['status']} at "
                         f"Portmone) is not among the bills that may hold money: {view.open_bills}")  # fmt: skip
    return found


async def runs_of(client: Client, workflow_id: str) -> list[str]:
    """Every run of a workflow id (continued as new, or reset), latest first."""
    try:
        return [e.run_id async for e in client.list_workflows(f'WorkflowId="{workflow_id}"')]
    except RPCError:  # the Java test server lists nothing: follow the continue-as-new chain back
        pass
    run_ids: list[str] = []
    run_id = (await client.get_workflow_handle(workflow_id).describe()).run_id
    while run_id:
        run_ids.append(run_id)
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        run_id = started.continued_execution_run_id
    return run_ids


def _accepted_update_id(event: HistoryEvent) -> str:
    """The update an accepted event is about. An update a Reset re-delivered was admitted as an event of
    its own, and its accepted event names it by the protocol instance, not by a copy of the request."""
    accepted = event.workflow_execution_update_accepted_event_attributes
    return accepted.accepted_request.meta.update_id or accepted.protocol_instance_id


async def _history_breaches(client: Client, workflow_id: str) -> list[str]:
    found: list[str] = []
    for run_id in await runs_of(client, workflow_id):
        run = client.get_workflow_handle(workflow_id, run_id=run_id)
        events = (await run.fetch_history()).events
        if len(events) > HISTORY_BOUND:
            found.append(f"{workflow_id} run {run_id}: {len(events)} history events (bound {HISTORY_BOUND})")
        accepted = {_accepted_update_id(e) for e in events if e.event_type == _ACCEPTED}
        completed = {e.workflow_execution_update_completed_event_attributes.meta.update_id
                     for e in events if e.event_type == _COMPLETED}  # fmt: skip
        # A run an engineer's Reset ended (TERMINATED) loses the update it was applying: its caller gets an
        # error, and the new run follows the ledger (docs/runbook.md, "Reset").
        if accepted - completed and (await run.describe()).status != WorkflowExecutionStatus.TERMINATED:
            found.append(f"{workflow_id} run {run_id}: updates accepted and never answered: {accepted - completed}")
    return found
