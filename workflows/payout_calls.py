"""The payout workflow's activity calls: names, timeouts, retry policies and task queues in one place.

Activities are called by name (`payouts.names.ActivityName`; the worker registers them under these
names), so workflows import nothing from activities/. Ledger steps run as local activities: each is one
short, idempotent database transaction, so a retried or re-run step changes nothing twice, and a local
activity costs one history event instead of three. When the ledger has not answered within
`LEDGER_LOCAL_RETRY`'s tries, the step goes on as a regular activity that waits the outage out without a
deadline: its retries happen in the server and add no history, so an outage of any length delays a
payout by a bounded number of events and never fails it. `bills.create` and the telecom top-up are
regular activities (their attempts and timeouts are visible in the history, and they may run for a
minute).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from payouts import failures
    from payouts.models import (
        CallbackSignal,
        CreateBillInput,
        CreateBillOutput,
        EscalateInput,
        EscalateOutput,
        LedgerStateOutput,
        OperatorActionInput,
        OperatorActionOutput,
        ReminderInput,
        ReserveInput,
        ReserveOutput,
        TopupInput,
        TopupOutput,
        TransitionInput,
    )
    from payouts.names import ActivityName

NOTIFY_TASK_QUEUE = "payouts-notify"
# bills.create only: its workers carry Portmone's request-rate cap (max_task_queue_activities_per_second),
# which Temporal enforces per task queue, so the cap holds however many worker replicas poll it.
PORTMONE_TASK_QUEUE = "payouts-portmone"
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
TELECOM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=[failures.TELECOM_REFUSED],
)
REMINDER_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=5)

_LEDGER_START_TO_CLOSE = timedelta(seconds=30)
_LOCAL_RETRY_THRESHOLD = timedelta(seconds=1)
# A ledger step's tries as a local activity (a blip: 1 + 2 + 4 + … s, about two minutes in all) before
# it waits the outage out as a regular activity: a handful of workflow timers (about 40 events), then
# three more however long the outage lasts. Counted in attempts, not time, so it holds in virtual time.
LEDGER_LOCAL_RETRY = RetryPolicy(
    initial_interval=LEDGER_RETRY.initial_interval,
    maximum_interval=LEDGER_RETRY.maximum_interval,
    maximum_attempts=8,
    non_retryable_error_types=LEDGER_RETRY.non_retryable_error_types,
)
# How long a bill round waits, once the ledger answers again, after it could not record its attempt: the
# first pause, doubled each time the attempt log stays unwritable (its table, not the whole ledger, is
# down), up to the last.
LEDGER_PAUSE = timedelta(seconds=60)
LEDGER_PAUSE_MAX = timedelta(hours=1)


def ledger_pause(times: int) -> timedelta:
    """The pause after the `times`-th bill round in a row whose attempt the ledger could not record."""
    pause: timedelta = LEDGER_PAUSE * 2 ** min(times - 1, 16)
    return min(pause, LEDGER_PAUSE_MAX)


async def _ledger(name: ActivityName, arg: Any, result_type: type[T] | None, summary: str) -> T:
    try:
        result: T = await workflow.start_local_activity(
            name,
            arg,
            result_type=result_type,
            start_to_close_timeout=_LEDGER_START_TO_CLOSE,
            retry_policy=LEDGER_LOCAL_RETRY,
            # Past the first retry, wait on a workflow timer rather than inside a workflow task kept open by
            # heartbeats: a waiting payout holds no task.
            local_retry_threshold=_LOCAL_RETRY_THRESHOLD,
            summary=summary,
        )
        return result
    except (ActivityError, ApplicationError) as err:
        if refused_for_good(err):
            raise
    waited: T = await workflow.start_activity(
        name,
        arg,
        result_type=result_type,
        start_to_close_timeout=_LEDGER_START_TO_CLOSE,
        retry_policy=LEDGER_RETRY,
        summary=f"{summary} (the ledger did not answer: waiting the outage out)",
    )
    return waited


def refused_for_good(err: ActivityError | ApplicationError) -> bool:
    """A ledger step the ledger refused (no retry changes it), as opposed to one it could not serve."""
    cause = err.cause if isinstance(err, ActivityError) else err
    return isinstance(cause, ApplicationError) and (
        cause.non_retryable or cause.type in (LEDGER_RETRY.non_retryable_error_types or ())
    )


def reserve(inp: ReserveInput) -> Awaitable[ReserveOutput]:
    return _ledger(ActivityName.RESERVE, inp, ReserveOutput, "reserve the payout in the ledger (limits, duplicates)")


def transition(inp: TransitionInput) -> Awaitable[None]:
    return _ledger(ActivityName.TRANSITION, inp, None, f"ledger: {inp.to_status.value}")


def escalate(inp: EscalateInput) -> Awaitable[EscalateOutput]:
    summary = "ledger: MANUAL_REVIEW, with the bills that may hold money"
    return _ledger(ActivityName.ESCALATE, inp, EscalateOutput, summary)


def undelivered_callbacks(payout_id: str) -> Awaitable[list[CallbackSignal]]:
    summary = "ledger: stored callbacks not yet processed"
    return _ledger(ActivityName.UNDELIVERED_CALLBACKS, payout_id, list[CallbackSignal], summary)


def ledger_state(payout_id: str) -> Awaitable[LedgerStateOutput]:
    summary = "ledger: the payout's status (a step was refused)"
    return _ledger(ActivityName.LEDGER_STATE, payout_id, LedgerStateOutput, summary)


def record_operator_action(inp: OperatorActionInput) -> Awaitable[OperatorActionOutput]:
    return _ledger(ActivityName.RECORD_OPERATOR_ACTION, inp, OperatorActionOutput, f"audit: operator {inp.action}")


def create_bill(inp: CreateBillInput, attempt_timeout_seconds: int) -> Handle[CreateBillOutput]:
    """One Portmone bill; its handle raises ActivityError (outcome unknown, permanent: not retried)."""
    return workflow.start_activity(
        ActivityName.CREATE_BILL,
        inp,
        result_type=CreateBillOutput,
        task_queue=PORTMONE_TASK_QUEUE,
        start_to_close_timeout=timedelta(seconds=attempt_timeout_seconds),
        schedule_to_close_timeout=timedelta(minutes=15),
        retry_policy=BILL_RETRY,
        summary=f"Portmone bills.create, round {inp.round_no}",
    )


def topup(inp: TopupInput) -> Handle[TopupOutput]:
    return workflow.start_activity(
        ActivityName.TOPUP,
        inp,
        result_type=TopupOutput,
        start_to_close_timeout=timedelta(seconds=30),
        schedule_to_close_timeout=timedelta(minutes=30),
        retry_policy=TELECOM_RETRY,
        summary="telecom top-up (when configured)",
    )


def remind_operators(inp: ReminderInput) -> Handle[None]:
    """Best effort (the caller ignores its failure): the operators' chat and the reminder metric."""
    return workflow.start_activity(
        ActivityName.REMIND_OPERATORS,
        inp,
        task_queue=NOTIFY_TASK_QUEUE,
        start_to_close_timeout=timedelta(seconds=15),
        schedule_to_close_timeout=timedelta(minutes=2),
        retry_policy=REMINDER_RETRY,
        summary="remind operators: payout waits in manual review",
    )


async def uncancellable(task: asyncio.Future[T], on_cancel: Callable[[], None]) -> T:
    """Run a started money-path activity to its end even when the workflow is asked to cancel meanwhile.

    A Temporal cancellation (the Web UI's Request Cancellation) would otherwise cancel the activity and
    leave its effect unknown to the workflow: a bill created and forgotten, a transition committed and
    not followed. The request is reported through `on_cancel`, and the workflow decides afterwards.
    """
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            on_cancel()


def ignore_failure(task: asyncio.Future[Any]) -> None:
    """The done callback of a best-effort call nobody awaits: its failure is read (so it is not reported as
    never retrieved) and dropped."""
    if not task.cancelled():
        task.exception()
