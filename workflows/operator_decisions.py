"""Operator updates (`retry`, `mark_paid`, `cancel`): who may decide what, and the audit row first.

Validators refuse with a message in the operator's terms (`UpdateRefused`, readable in the Web UI and
the CLI). An accepted decision is written to the ledger's audit trail before anything else happens;
the workflow then applies it and answers the update (`PayoutState.answer`). A repeat of the same
update id (a client retry) gets the first answer and changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.payout_state import STEP_FAILED, Decision, PayoutState, failure_type

with workflow.unsafe.imports_passed_through():
    from payouts import failures
    from payouts.models import (
        BillConfirmation,
        OperatorActionInput,
        OperatorActionOutput,
        OperatorCancel,
        OperatorMarkPaid,
        OperatorResult,
        OperatorRetry,
    )
    from payouts.names import UpdateName
    from payouts.status import PayoutStatus

ACTIONS: dict[type[Decision], UpdateName] = {
    OperatorRetry: UpdateName.RETRY, OperatorMarkPaid: UpdateName.MARK_PAID, OperatorCancel: UpdateName.CANCEL
}
RETRY_HELP = (
    "Operator: try again — a new Portmone bill (after telecom_failed: only the top-up again). "
    "Needs operator and reason; while earlier bills may hold money also confirmed_no_bill_at_portmone."
)
MARK_PAID_HELP = "Operator: the payout was paid outside the automation. Needs operator, reason, external_reference."
CANCEL_HELP = (
    "Operator: close the payout without paying; the user is told. Needs operator and reason; while "
    "earlier bills may hold money also confirmed_no_bill_at_portmone."
)


def refusal(message: str) -> ApplicationError:
    """An update validator's refusal: readable in the Web UI and the CLI (it holds no personal data)."""
    return ApplicationError(message, type=failures.UPDATE_REFUSED, non_retryable=True)


def check_retry(state: PayoutState, cmd: OperatorRetry) -> None:
    if _is_repeat(state):
        return
    _check_common(state, cmd.operator, cmd.reason)
    if state.progress.paid_callback is not None:
        return  # telecom_failed: only the top-up is repeated, no new bill
    paid = state.paid_bill()
    if paid is not None:
        raise refusal(
            f"bill {paid} was paid (Portmone's callback is stored): a new bill would pay twice; "
            "use mark_paid, or wait for the payout to complete"
        )
    _require_confirmation(state, cmd.confirmed_no_bill_at_portmone, "retrying")


def check_mark_paid(state: PayoutState, cmd: OperatorMarkPaid) -> None:
    if not _is_repeat(state):
        _check_common(state, cmd.operator, cmd.reason, ("external_reference", cmd.external_reference))


def check_cancel(state: PayoutState, cmd: OperatorCancel) -> None:
    if _is_repeat(state):
        return
    _check_common(state, cmd.operator, cmd.reason)
    paid = state.paid_bill()
    if paid is not None:
        topup = " (after telecom_failed, `retry` repeats the top-up)" if state.progress.paid_callback else ""
        raise refusal(
            f"bill {paid} was paid at Portmone (its callback is stored): a cancelled payout would hide money "
            f"that moved; use mark_paid{topup}"
        )
    _require_confirmation(state, cmd.confirmed_no_bill_at_portmone, "cancelling")


async def decide(
    state: PayoutState, cmd: Decision, record: Callable[[OperatorActionInput], Awaitable[OperatorActionOutput]]
) -> OperatorResult:
    """Claim the payout, write the audit row (with the confirmations it carries), hand the decision to the
    story, wait for its answer."""
    info = workflow.current_update_info()
    update_id = info.id if info else str(workflow.uuid4())
    if update_id not in state.results and update_id != state.claim:
        if state.claim is not None:  # the validator refuses this; kept for updates sent without validation
            raise ApplicationError("another operator decision is being applied", non_retryable=True)
        state.claim = update_id  # before the first await: a concurrent update now fails validation
        row = audit_row(state, cmd, update_id)
        try:
            recorded = await record(row)
        except STEP_FAILED as err:
            # The audit row could not be written: nothing was decided, and the next decision may come.
            action = ACTIONS[type(cmd)]
            state.answer(update_id, False, f"{action} not applied: the audit record failed ({failure_type(err)})")
            raise ApplicationError(state.results[update_id].message, non_retryable=True) from None
        changed = _evidence_changed(row, recorded)
        if changed:
            # The operator answered evidence that is no longer all there is: show the new and refuse.
            state.progress.open_bills = list(recorded.open_bills)
            state.answer(
                update_id, False, f"{ACTIONS[type(cmd)]} not applied: new evidence since you looked ({changed}); "
                "check Portmone's cabinet again and decide on what the payout lists now"
            )
        else:
            state.decision = cmd
    await workflow.wait_condition(lambda: update_id in state.results)
    return state.results[update_id]


def _evidence_changed(row: OperatorActionInput, recorded: OperatorActionOutput) -> str:
    """The confirmed bills the ledger still lists as possibly holding money (their evidence changed)."""
    confirmed = {c.attempt_id for c in row.confirms}
    return "; ".join(b.text for b in recorded.open_bills if b.attempt_id in confirmed)


def audit_row(state: PayoutState, cmd: Decision, update_id: str) -> OperatorActionInput:
    """The ledger's audit row for a decision; a confirmation names exactly the listed bills, as listed."""
    details = {"escalation_reason": state.progress.escalation_reason or "", "update_id": update_id}
    confirms: list[BillConfirmation] = []
    if isinstance(cmd, OperatorRetry | OperatorCancel):
        details["confirmed_no_bill_at_portmone"] = str(cmd.confirmed_no_bill_at_portmone).lower()
        if cmd.confirmed_no_bill_at_portmone:
            live = state.live_bills()
            confirms = [BillConfirmation(attempt_id=b.attempt_id, evidence=b.evidence) for b in live]
            details["confirmed_bills"] = "; ".join(b.text for b in live)
    return OperatorActionInput(
        payout_id=state.payout_id,
        action=ACTIONS[type(cmd)],
        operator=cmd.operator,
        reason=cmd.reason,
        reference=cmd.external_reference if isinstance(cmd, OperatorMarkPaid) else None,
        idempotency_key=f"{state.payout_id}:update:{update_id}",
        details=details,
        confirms=confirms,
    )


def _require_confirmation(state: PayoutState, confirmed: bool, doing: str) -> None:
    live = [b.text for b in state.live_bills()]
    if live and not confirmed:
        raise refusal(
            f"an earlier bill may hold money ({'; '.join(live)}): check Portmone's cabinet, cancel any unpaid "
            f"bill there, and confirm that Portmone holds no bill that can still be paid "
            f"(confirmed_no_bill_at_portmone) before {doing}, or a second payment may follow"
        )


def _is_repeat(state: PayoutState) -> bool:
    """The same update id again (a client retry): it gets the first answer, nothing happens twice."""
    info = workflow.current_update_info()
    return info is not None and (info.id in state.results or info.id == state.claim)


def _check_common(state: PayoutState, operator: str, reason: str, *more: tuple[str, str]) -> None:
    fields = (("operator", operator), ("reason", reason), *more)
    missing = [name for name, value in fields if not value.strip()]
    if missing:
        raise refusal(f"missing: {', '.join(missing)}")
    if state.status != PayoutStatus.MANUAL_REVIEW:
        raise refusal(f"payout is {state.status.value}, not MANUAL_REVIEW: nothing for an operator to do")
    settling = _settling(state)
    if settling is not None:
        raise refusal(f"{settling}: the service is settling this payout itself; no decision is needed")
    if state.claim is not None:
        raise refusal("another operator decision is being applied")


def _settling(state: PayoutState) -> str | None:
    """Why the service itself is settling the payout now (a late paid callback), or None."""
    if state.settling is not None:
        return state.settling
    late = state.paid()
    return None if late is None else f"a paid callback for bill {late.bill_id} came in and is applied next"
