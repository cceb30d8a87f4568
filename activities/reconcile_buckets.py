"""Reconciliation's judgement: which payouts, bills and callbacks need a person, sorted into buckets.

Pure functions of a ledger snapshot and the workflows' states, so the same inputs give the same
report, byte for byte.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ledger import AttemptRecord, CallbackRecord, PayoutRecord, ReconciliationSnapshot
from payouts.status import TERMINAL, PayoutStatus
from portmone.protocol import BillStatus, parse_bill_status

AWAITING_PAST_SLA = "awaiting_callback_past_sla"
ORPHAN_CALLBACKS = "callbacks_for_unknown_or_closed_payouts"
OPEN_BILLS = "bills_without_terminal_status"
STATUS_MISMATCH = "status_differs_ledger_vs_workflow"
MULTIPLE_BILLS = "multiple_bills_per_receipt"
FAILED_WORKFLOWS = "payout_workflows_failed_or_terminated"
BUCKETS: tuple[str, ...] = (
    AWAITING_PAST_SLA, ORPHAN_CALLBACKS, OPEN_BILLS, STATUS_MISMATCH, MULTIPLE_BILLS, FAILED_WORKFLOWS,
)
# Executions that ended without the payout workflow deciding: it never does this by design (a bug,
# an operator's Terminate, a history limit), so each one is a page.
_ABNORMAL_ENDS = frozenset({"FAILED", "TERMINATED", "TIMED_OUT", "CANCELED"})

_FINAL_BILL = frozenset({BillStatus.PAYED, BillStatus.REJECTED, BillStatus.RETURN})
_STILL_WAITING = frozenset({PayoutStatus.BILL_REQUESTED, PayoutStatus.AWAITING_CALLBACK})
MISSING = "MISSING"


@dataclass(frozen=True)
class WorkflowState:
    """What Temporal says about a payout's workflow: `execution` is RUNNING, COMPLETED, … or MISSING."""

    execution: str
    payout_status: str | None


@dataclass(frozen=True)
class Finding:
    bucket: str
    payout_id: str = ""
    receipt_id: str = ""
    bill_id: str = ""
    ledger_status: str = ""
    workflow_status: str = ""
    since: str = ""  # ISO time the condition began (entered the status, callback received, bill created)
    detail: str = ""

    def sort_key(self) -> tuple[str, ...]:
        return (self.bucket, self.payout_id, self.bill_id, self.since, self.detail)


@dataclass
class Report:
    cutoff: datetime
    sla: timedelta
    findings: dict[str, list[Finding]] = field(default_factory=lambda: {b: [] for b in BUCKETS})

    def add(self, finding: Finding) -> None:
        self.findings[finding.bucket].append(finding)

    def counts(self) -> dict[str, int]:
        return {bucket: len(self.findings[bucket]) for bucket in BUCKETS}

    def sorted(self) -> Report:
        for bucket in BUCKETS:
            self.findings[bucket].sort(key=Finding.sort_key)
        return self


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else ""


def _is_final(cb: CallbackRecord) -> bool:
    return cb.rsp_status == "fail" or parse_bill_status(cb.bill_status) in _FINAL_BILL


def build(snapshot: ReconciliationSnapshot, workflows: dict[str, WorkflowState], *, cutoff: datetime,
          sla: timedelta) -> Report:
    """Sort the snapshot into the buckets (see docs/runbook.md, "Reconciliation")."""
    report = Report(cutoff=cutoff, sla=sla)
    by_id = {p.id: p for p in snapshot.payouts}
    _awaiting_past_sla(report, snapshot, cutoff - sla)
    _orphan_callbacks(report, snapshot, by_id)
    _open_bills(report, snapshot, by_id, cutoff - sla)
    _status_mismatch(report, snapshot, workflows)
    _multiple_bills(report, snapshot, by_id)
    _failed_workflows(report, snapshot, workflows)
    return report.sorted()


def _base(p: PayoutRecord) -> dict[str, str]:
    return {"payout_id": p.id, "receipt_id": p.receipt_id, "ledger_status": p.status.value}


def _awaiting_past_sla(report: Report, snap: ReconciliationSnapshot, limit: datetime) -> None:
    for p in snap.payouts:
        since = snap.entered_status_at.get(p.id, p.updated_at)
        if p.status == PayoutStatus.AWAITING_CALLBACK and since <= limit:
            detail = f"no final callback for bill {p.bill_id or '?'} since {_iso(since)} (SLA {report.sla})"
            report.add(Finding(AWAITING_PAST_SLA, bill_id=p.bill_id or "", since=_iso(since), detail=detail,
                               **_base(p)))


def _orphan_callbacks(report: Report, snap: ReconciliationSnapshot, by_id: dict[str, PayoutRecord]) -> None:
    for cb in snap.callbacks:
        code = f" code {cb.error_code}" if cb.error_code else ""
        verdict = f"{cb.rsp_status or '?'}/{cb.bill_status or '?'}{code}"
        if cb.payout_id is None:
            report.add(Finding(ORPHAN_CALLBACKS, bill_id=cb.bill_id or "", since=_iso(cb.received_at),
                               detail=f"callback #{cb.id} ({verdict}) names a bill no payout holds"))
            continue
        payout = by_id.get(cb.payout_id)
        if payout is not None and payout.status in TERMINAL and cb.processed_at is None:
            report.add(Finding(ORPHAN_CALLBACKS, bill_id=cb.bill_id or "", since=_iso(cb.received_at),
                               detail=f"callback #{cb.id} ({verdict}) arrived for a {payout.status.value} payout "
                                      "and was never applied", **_base(payout)))


def _open_bills(report: Report, snap: ReconciliationSnapshot, by_id: dict[str, PayoutRecord],
                limit: datetime) -> None:
    settled = {cb.bill_id for cb in snap.callbacks if cb.bill_id and _is_final(cb)}
    for bill in snap.bills:
        payout = by_id.get(bill.payout_id)
        created = bill.finished_at or bill.prepared_at
        if payout is None or bill.bill_id in settled or created > limit:
            continue
        if bill.bill_id == payout.bill_id and payout.status in _STILL_WAITING:
            continue  # the current bill of a payout still waiting: AWAITING_PAST_SLA watches it
        report.add(Finding(OPEN_BILLS, bill_id=bill.bill_id or "", since=_iso(created),
                           detail=f"bill of round {bill.round_no} has no final status from Portmone "
                                  f"(payout is {payout.status.value})", **_base(payout)))


def _status_mismatch(report: Report, snap: ReconciliationSnapshot, workflows: dict[str, WorkflowState]) -> None:
    for p in snap.payouts:
        wf = workflows.get(p.id, WorkflowState(MISSING, None))
        if wf.execution in _ABNORMAL_ENDS:
            continue  # FAILED_WORKFLOWS reports it
        if wf.execution == MISSING:
            detail = "the ledger holds this payout but Temporal has no workflow for it"
        elif wf.payout_status != p.status.value:
            detail = f"ledger says {p.status.value}, workflow says {wf.payout_status or '?'}"
        elif wf.execution != "RUNNING" and p.status not in TERMINAL:
            detail = f"workflow is {wf.execution} while the payout is still {p.status.value}"
        else:
            continue
        report.add(Finding(STATUS_MISMATCH, workflow_status=f"{wf.payout_status or ''} ({wf.execution})",
                           since=_iso(snap.entered_status_at.get(p.id, p.updated_at)), detail=detail, **_base(p)))


def _multiple_bills(report: Report, snap: ReconciliationSnapshot, by_id: dict[str, PayoutRecord]) -> None:
    bills: dict[str, list[AttemptRecord]] = defaultdict(list)
    for bill in snap.bills:
        if bill.bill_id and all(b.bill_id != bill.bill_id for b in bills[bill.payout_id]):
            bills[bill.payout_id].append(bill)
    final: dict[str, str] = {}
    for cb in snap.callbacks:
        if cb.bill_id and _is_final(cb):
            paid = cb.rsp_status == "ok" and parse_bill_status(cb.bill_status) == BillStatus.PAYED
            if paid or cb.bill_id not in final:
                final[cb.bill_id] = "PAYED" if paid else (cb.bill_status or "fail")
    for payout_id, its_bills in bills.items():
        if len(its_bills) < 2:
            continue
        payout = by_id[payout_id]
        statuses = [f"{b.bill_id} ({final.get(b.bill_id or '', 'no final status')})" for b in its_bills]
        paid_count = sum(1 for b in its_bills if final.get(b.bill_id or "") == "PAYED")
        report.add(Finding(MULTIPLE_BILLS, since=_iso(its_bills[0].prepared_at),
                           bill_id=",".join(b.bill_id or "" for b in its_bills),
                           detail=f"{len(its_bills)} bills, {paid_count} paid: {'; '.join(statuses)}", **_base(payout)))


def _failed_workflows(report: Report, snap: ReconciliationSnapshot, workflows: dict[str, WorkflowState]) -> None:
    for p in snap.payouts:
        wf = workflows.get(p.id)
        if wf is not None and wf.execution in _ABNORMAL_ENDS:
            report.add(Finding(FAILED_WORKFLOWS, workflow_status=f"{wf.payout_status or ''} ({wf.execution})",
                               since=_iso(snap.entered_status_at.get(p.id, p.updated_at)),
                               detail=f"the payout workflow ended {wf.execution} with the ledger at {p.status.value}",
                               **_base(p)))
