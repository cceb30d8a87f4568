"""`payouts ops show`: one payout's story, from the ledger and from the workflow, in time order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowExecutionDescription, WorkflowHandle, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from console.ops.context import Ops, OpsError
from console.ops.decide import in_cli_words, suggested_commands
from payouts import search_attributes as sa
from payouts.escalation import operator_hint
from payouts.models import PayoutView
from payouts.money import format_amount
from payouts.names import STATUS_QUERY
from payouts.status import PayoutStatus

_TIME = "%Y-%m-%d %H:%M:%S"
# Activities worth a timeline row of their own: money and people. Ledger writes show as ledger rows.
_SHOWN_ACTIVITIES = frozenset({"portmone.create_bill", "telecom.topup", "notify.remind_operators"})


@dataclass(frozen=True)
class Entry:
    at: datetime
    source: str  # "ledger" or "workflow"
    text: str


def _workflow_entry(event: HistoryEvent) -> Entry | None:
    at = event.event_time.ToDatetime(tzinfo=UTC)
    kind = event.event_type
    text: str | None = None
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        text = "workflow started"
    elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
        text = f"signal {event.workflow_execution_signaled_event_attributes.signal_name}"
    elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
        request = event.workflow_execution_update_accepted_event_attributes.accepted_request
        text = f"update {request.input.name} accepted (update id {request.meta.update_id})"
    elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
        meta = event.workflow_execution_update_completed_event_attributes.meta
        text = f"update completed (update id {meta.update_id})"
    elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        activity_type = event.activity_task_scheduled_event_attributes.activity_type.name
        if activity_type in _SHOWN_ACTIVITIES:  # the ledger rows tell the rest
            text = f"activity {activity_type} scheduled"
    elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
        text = "activity failed (details in the Web UI)"
    elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
        text = "activity timed out"
    elif kind == EventType.EVENT_TYPE_TIMER_FIRED:
        text = "timer fired (callback timeout, back-off or reminder)"
    elif kind in (
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
    ):
        text = "workflow " + EventType.Name(kind).removeprefix("EVENT_TYPE_WORKFLOW_EXECUTION_").lower()
    return None if text is None else Entry(at, "workflow", text)


async def _ledger_entries(ops: Ops, payout_id: str) -> list[Entry]:
    led = ops.ledger
    out: list[Entry] = []
    for change in await led.payouts.history(payout_id):
        arrow = f"{change.from_status.value} → " if change.from_status else ""
        why = f" ({change.reason})" if change.reason else ""
        out.append(Entry(change.created_at, "ledger", f"status {arrow}{change.to_status.value}{why}"))
    for attempt in await led.attempts.for_payout(payout_id):
        out.append(Entry(attempt.prepared_at, "ledger", f"bill attempt {attempt.attempt_no} (round {attempt.round_no}) "
                                                         "prepared"))
        if attempt.finished_at is not None:
            result = f"bill {attempt.bill_id}" if attempt.bill_id else (attempt.error_code or attempt.detail or "")
            out.append(Entry(attempt.finished_at, "ledger",
                             f"bill attempt {attempt.attempt_no} {attempt.state}: {result}".rstrip(": ")))
    for exchange in await led.archive.for_payout(payout_id):
        status = f"HTTP {exchange.http_status}" if exchange.http_status else "no HTTP answer"
        out.append(Entry(exchange.created_at, "ledger",
                         f"Portmone {exchange.method}: {exchange.outcome} ({status}, {exchange.elapsed_ms} ms)"))
    for cb in await led.callbacks.for_payout(payout_id):
        code = f" code {cb.error_code}" if cb.error_code else ""
        done = "applied" if cb.processed_at else "not applied"
        out.append(Entry(cb.received_at, "ledger",
                         f"callback #{cb.id} for bill {cb.bill_id}: {cb.rsp_status}/{cb.bill_status}{code} ({done})"))
    for action in await led.operator_actions.for_payout(payout_id):
        extra = f" reference {action.reference}" if action.reference else ""
        flags = action.details or {}
        confirmed = " [confirmed no bill at Portmone]" if flags.get("confirmed_no_bill_at_portmone") == "true" else ""
        out.append(Entry(action.created_at, "ledger",
                         f"operator {action.operator}: {action.action} — {action.reason or ''}{extra}{confirmed}"))
    return out


async def _describe(handle: WorkflowHandle[None, None]) -> WorkflowExecutionDescription | None:
    try:
        return await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def _view(handle: WorkflowHandle[None, None]) -> PayoutView | None:
    """The workflow's own view (needs a running worker; None when nobody answers)."""
    try:
        view: PayoutView = await handle.query(STATUS_QUERY, result_type=PayoutView, rpc_timeout=timedelta(seconds=5))
    except (WorkflowQueryFailedError, RPCError):
        return None  # the ledger and the history still tell the story
    return view


async def show(ops: Ops, payout_id: str, flags: Sequence[str] = ()) -> str:
    """The payout's story; the commands it suggests carry `flags` (how this command reached the stack)."""
    record = await ops.ledger.payouts.get(payout_id)
    handle: WorkflowHandle[None, None] = ops.client.get_workflow_handle(payout_id)
    described = await _describe(handle)
    if record is None and described is None:
        raise OpsError(f"no payout {payout_id}: neither the ledger nor Temporal knows it")
    lines: list[str] = []
    if record is not None:
        lines.append(f"{record.id} · receipt {record.receipt_id} · {format_amount(record.amount_kopecks)} "
                     f"{record.currency} · {record.masked_msisdn}")
        reason = f" (reason {record.reason})" if record.reason else ""
        lines.append(f"ledger:   {record.status.value}{reason} · bill {record.bill_id or '—'}")
    else:
        lines.append(f"{payout_id} · the ledger has no row for it")
    view: PayoutView | None = None
    if described is not None:
        attrs = described.typed_search_attributes
        status = described.status.name if described.status else "UNKNOWN"
        lines.append(f"workflow: {status} · PayoutStatus {attrs.get(sa.PAYOUT_STATUS) or '—'} · "
                     f"EscalationReason {attrs.get(sa.ESCALATION_REASON) or '—'} · run {described.run_id}")
        view = await _view(handle)
        if view is not None:
            lines.append(f"          round {view.bill_round} · last error: {view.last_error or '—'} · "
                         f"reminders sent: {view.reminders_sent}")
    else:
        lines.append("workflow: Temporal has no workflow for this payout")
    in_review = (view.status if view else record.status if record else None) == PayoutStatus.MANUAL_REVIEW
    if in_review:
        reason_now = (view.escalation_reason if view else None) or (record.reason if record else None)
        lines.append(f"operator can do now: {in_cli_words(operator_hint(reason_now), payout_id, flags)}")
        open_bills = await ops.ledger.attempts.open_bills(payout_id) if record is not None else []
        if open_bills:
            lines.append("bills that may hold money (check each in Portmone's cabinet before retry or cancel; "
                         "confirm only when none can be paid):")
            lines += [f"  {bill.describe()}" for bill in open_bills]
        lines.append("decide with one of (fill in NAME, TEXT, REF):")
        lines += [f"  {command}" for command in suggested_commands(payout_id, flags, confirm=bool(open_bills))]

    entries = await _ledger_entries(ops, payout_id)
    if described is not None:
        entries += [e for e in [_workflow_entry(ev) async for ev in handle.fetch_history_events()] if e is not None]
    entries.sort(key=lambda e: e.at)
    lines.append("")
    lines.append("timeline (UTC):")
    lines += [f"  {e.at.strftime(_TIME)}  {e.source:<8}  {e.text}" for e in entries]
    return "\n".join(lines)
