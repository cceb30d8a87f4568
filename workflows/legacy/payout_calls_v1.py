"""The payout workflow's activity calls: timeouts, retry policies and task queues in one place.

Workflow code only (each function schedules an activity); `ReceiptPayoutWorkflow` keeps the
decisions. Ledger calls on the money path retry without a deadline (capped back-off): an outage
delays a payout, it never fails one (the activities count the outage for the alert). Side effects off
the money path (Telegram, analytics, reminders) are best effort: they log and return when their
activity finally fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.bill import BillActivities
    from activities.ledger import LedgerActivities
    from activities.notify import NotifyActivities
    from activities.telecom import TelecomActivities
    from payouts import failures
    from payouts.models import (
        AnalyticsEvent,
        CallbackSignal,
        CreateBillInput,
        CreateBillOutput,
        EscalateInput,
        EscalateOutput,
        LedgerStateOutput,
        NotifyInput,
        NotifyOutput,
        OperatorActionInput,
        ReminderInput,
        ReserveInput,
        ReserveOutput,
        TopupInput,
        TopupOutput,
        TransitionInput,
    )

NOTIFY_TASK_QUEUE = "payouts-notify"
T = TypeVar("T")
Handle = workflow.ActivityHandle

# No maximum attempts and no schedule-to-close: only a refusal that no retry can change stops it.
LEDGER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=60),
    non_retryable_error_types=[failures.ILLEGAL_TRANSITION, failures.BAD_PAYOUT_DATA],
)
BILL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=6,
    non_retryable_error_types=failures.NON_RETRYABLE_BILL,
)
SIDE_EFFECT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=5)
TELECOM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=[failures.TELECOM_REFUSED],
)

_LEDGER_START_TO_CLOSE = timedelta(seconds=30)
_NOTIFY_START_TO_CLOSE = timedelta(seconds=15)
_NOTIFY_SCHEDULE_TO_CLOSE = timedelta(minutes=2)


A = TypeVar("A")


def _ledger(activity: Callable[[LedgerActivities, A], Awaitable[T]], arg: A, summary: str) -> Handle[T]:
    """A ledger activity on the money path: retried without a deadline (LEDGER_RETRY)."""
    return workflow.start_activity_method(
        activity, arg, start_to_close_timeout=_LEDGER_START_TO_CLOSE, retry_policy=LEDGER_RETRY, summary=summary
    )


def reserve(inp: ReserveInput) -> Handle[ReserveOutput]:
    return _ledger(LedgerActivities.reserve, inp, "reserve the payout in the ledger (limits, duplicates)")


def transition(inp: TransitionInput) -> Handle[None]:
    return _ledger(LedgerActivities.transition, inp, f"ledger: {inp.to_status.value}")


def escalate(inp: EscalateInput) -> Handle[EscalateOutput]:
    return _ledger(LedgerActivities.escalate, inp, "ledger: MANUAL_REVIEW, with the bills that may hold money")


def undelivered_callbacks(payout_id: str) -> Handle[list[CallbackSignal]]:
    return _ledger(LedgerActivities.undelivered_callbacks, payout_id, "ledger: stored callbacks not yet processed")


def ledger_state(payout_id: str) -> Handle[LedgerStateOutput]:
    return _ledger(LedgerActivities.state, payout_id, "ledger: the payout's status (the ledger refused the next step)")


def record_operator_action(inp: OperatorActionInput) -> Handle[None]:
    return _ledger(LedgerActivities.record_operator_action, inp, f"audit: operator {inp.action}")


def create_bill(inp: CreateBillInput, attempt_timeout_seconds: int) -> Handle[CreateBillOutput]:
    """One Portmone bill; its handle raises ActivityError (outcome unknown, permanent: not retried)."""
    return workflow.start_activity_method(
        BillActivities.create_bill,
        inp,
        start_to_close_timeout=timedelta(seconds=attempt_timeout_seconds),
        schedule_to_close_timeout=timedelta(minutes=15),
        retry_policy=BILL_RETRY,
        summary=f"Portmone bills.create, round {inp.round_no}",
    )


def topup(inp: TopupInput) -> Handle[TopupOutput]:
    return workflow.start_activity_method(
        TelecomActivities.topup,
        inp,
        start_to_close_timeout=timedelta(seconds=30),
        schedule_to_close_timeout=timedelta(minutes=30),
        retry_policy=TELECOM_RETRY,
        summary="telecom top-up (when configured)",
    )


def start_notify(inp: NotifyInput, summary: str) -> workflow.ActivityHandle[NotifyOutput]:
    return workflow.start_activity_method(
        NotifyActivities.notify,
        inp,
        task_queue=NOTIFY_TASK_QUEUE,
        start_to_close_timeout=_NOTIFY_START_TO_CLOSE,
        schedule_to_close_timeout=_NOTIFY_SCHEDULE_TO_CLOSE,
        retry_policy=SIDE_EFFECT_RETRY,
        summary=summary,
    )


async def notify_best_effort(inp: NotifyInput, summary: str) -> None:
    try:
        await start_notify(inp, summary)
    except ActivityError:
        workflow.logger.warning("telegram notification %s failed", inp.kind.value)


async def emit_best_effort(event: AnalyticsEvent) -> None:
    try:
        await workflow.execute_activity_method(
            NotifyActivities.emit_event,
            event,
            task_queue=NOTIFY_TASK_QUEUE,
            start_to_close_timeout=timedelta(seconds=10),
            schedule_to_close_timeout=_NOTIFY_SCHEDULE_TO_CLOSE,
            retry_policy=SIDE_EFFECT_RETRY,
            summary=f"analytics: {event.name}",
        )
    except ActivityError:
        workflow.logger.warning("analytics event %s failed for %s", event.name, event.payout_id)


async def remind_best_effort(inp: ReminderInput) -> None:
    try:
        await workflow.execute_activity_method(
            NotifyActivities.remind_operators,
            inp,
            task_queue=NOTIFY_TASK_QUEUE,
            start_to_close_timeout=_NOTIFY_START_TO_CLOSE,
            schedule_to_close_timeout=_NOTIFY_SCHEDULE_TO_CLOSE,
            retry_policy=SIDE_EFFECT_RETRY,
            summary="remind operators: payout waits in manual review",
        )
    except ActivityError:
        workflow.logger.warning("operator reminder failed for %s", inp.payout_id)


async def uncancellable(task: Handle[T], on_cancel: Callable[[], None]) -> T:
    """Run a started money-path activity to its end even when the workflow is asked to cancel meanwhile.

    A Temporal cancellation (the Web UI's Request Cancellation) would otherwise cancel the activity and
    leave its effect unknown to the workflow: a bill created and forgotten, a transition committed and
    not followed. The request is reported through `on_cancel`, and the workflow decides afterwards.
    The activities above are started (their command issued) when called, in the order the workflow
    calls them; only the wait for their result goes through here.
    """
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            on_cancel()
