"""ReceiptPayout, branch by branch, with fake activities registered by name on the time-skipping server.

Fast and exact: each fake answers what the branch needs and records what the workflow asked, so a
test pins the workflow's decisions (which activity, with what, in what order) without a ledger,
Portmone or a webhook. The full-stack tests (tests/integration, tests/workflows/test_receipt_payout.py)
prove the same story with the real pieces.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from payouts import failures
from payouts.models import (
    CallbackSignal,
    CreateBillInput,
    CreateBillOutput,
    EscalateInput,
    EscalateOutput,
    LedgerStateOutput,
    OpenBillView,
    OperatorActionInput,
    OperatorActionOutput,
    OperatorCancel,
    OperatorMarkPaid,
    OperatorResult,
    OperatorRetry,
    PayoutPolicy,
    PayoutRequest,
    PayoutView,
    PayoutWorkflowInput,
    ReminderInput,
    ReserveInput,
    ReserveOutput,
    TopupInput,
    TopupOutput,
    TransitionInput,
)
from payouts.names import ActivityName, UpdateName
from payouts.status import PayoutStatus as S
from payouts.verdicts import Verdict
from workflows.payout_calls import NOTIFY_TASK_QUEUE, PORTMONE_TASK_QUEUE
from workflows.receipt_payout import ReceiptPayout

WORKFLOW_TASK_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
}  # fmt: skip
POLICY = PayoutPolicy(
    callback_timeout_seconds=3600, retry_backoff_seconds=300, max_bill_rounds=2, manual_reminder_seconds=4 * 3600
)
Handle = WorkflowHandle[ReceiptPayout, PayoutView]
CreateAnswer = Callable[[CreateBillInput], CreateBillOutput]


@dataclass
class Fakes:
    """Every activity the payout workflow calls, by its registered name, answering from a script."""

    reserve_answer: ReserveOutput | ApplicationError = field(
        default_factory=lambda: ReserveOutput(accepted=True, status=S.RESERVED)
    )
    create_answers: list[CreateAnswer | ApplicationError] = field(default_factory=list)
    topup_failures: list[ApplicationError] = field(default_factory=list)
    open_bills: list[OpenBillView] = field(default_factory=list)
    stored_callbacks: list[CallbackSignal] = field(default_factory=list)
    refuse_transition_to: S | None = None
    ledger_status: S = S.AWAITING_CALLBACK
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def named(self, name: str) -> list[Any]:
        return [arg for called, arg in self.calls if called == name]

    @activity.defn(name=ActivityName.RESERVE)
    async def reserve(self, inp: ReserveInput) -> ReserveOutput:
        self.calls.append(("reserve", inp))
        if isinstance(self.reserve_answer, ApplicationError):
            raise self.reserve_answer
        return self.reserve_answer

    @activity.defn(name=ActivityName.TRANSITION)
    async def transition(self, inp: TransitionInput) -> None:
        self.calls.append(("transition", inp))
        if inp.to_status == self.refuse_transition_to:
            raise ApplicationError("refused", type=failures.ILLEGAL_TRANSITION, non_retryable=True)

    @activity.defn(name=ActivityName.ESCALATE)
    async def escalate(self, inp: EscalateInput) -> EscalateOutput:
        self.calls.append(("escalate", inp))
        reason = inp.reason_if_bill_open if self.open_bills and inp.reason_if_bill_open else inp.reason
        return EscalateOutput(reason=reason, open_bills=self.open_bills)

    @activity.defn(name=ActivityName.UNDELIVERED_CALLBACKS)
    async def undelivered_callbacks(self, payout_id: str) -> list[CallbackSignal]:
        self.calls.append(("undelivered_callbacks", payout_id))
        return self.stored_callbacks

    @activity.defn(name=ActivityName.LEDGER_STATE)
    async def state(self, payout_id: str) -> LedgerStateOutput:
        self.calls.append(("state", payout_id))
        return LedgerStateOutput(status=self.ledger_status, reason="set by the ledger")

    @activity.defn(name=ActivityName.RECORD_OPERATOR_ACTION)
    async def record_operator_action(self, inp: OperatorActionInput) -> OperatorActionOutput:
        self.calls.append(("audit", inp))
        return OperatorActionOutput()

    @activity.defn(name=ActivityName.CREATE_BILL)
    async def create_bill(self, inp: CreateBillInput) -> CreateBillOutput:
        self.calls.append(("create_bill", inp))
        answer = self.create_answers.pop(0) if self.create_answers else bill(f"B-{inp.round_no}")
        if isinstance(answer, ApplicationError):
            raise answer
        return answer(inp)

    @activity.defn(name=ActivityName.TOPUP)
    async def topup(self, inp: TopupInput) -> TopupOutput:
        self.calls.append(("topup", inp))
        if self.topup_failures:
            raise self.topup_failures.pop(0)
        return TopupOutput(configured=True, topup_id="T-1")

    @activity.defn(name=ActivityName.REMIND_OPERATORS)
    async def remind(self, inp: ReminderInput) -> None:
        self.calls.append(("remind", inp))

    def payouts_activities(self) -> list[Callable[..., Any]]:
        return [self.reserve, self.transition, self.escalate, self.undelivered_callbacks, self.state,
                self.record_operator_action, self.topup]  # fmt: skip


def bill(bill_id: str) -> CreateAnswer:
    return lambda _inp: CreateBillOutput(bill_id=bill_id)


def callback(bill_id: str, verdict: Verdict, n: int = 1, code: str | None = None) -> CallbackSignal:
    return CallbackSignal(
        callback_id=n, dedupe_key=f"{bill_id}:{verdict}:{n}", bill_id=bill_id, rsp_ok=verdict == Verdict.PAID,
        bill_status="fake", error_code=code, verdict=verdict,
    )  # fmt: skip


def request() -> PayoutRequest:
    return PayoutRequest(
        receipt_id=f"R-{uuid.uuid4().hex[:10]}", telegram_id=7, msisdn_token="token-not-a-phone-0000",
        masked_msisdn="+380*****00", user_key="user-key-0123456789", amount_kopecks=2500,
        accepted_at=datetime.now(UTC),
    )  # fmt: skip


@dataclass
class Story:
    env: WorkflowEnvironment
    fakes: Fakes
    task_queue: str
    started: list[str] = field(default_factory=list)

    async def start(self, policy: PayoutPolicy = POLICY) -> Handle:
        req = request()
        self.started.append(f"payout-{req.receipt_id}")
        return await self.env.client.start_workflow(
            ReceiptPayout.run, PayoutWorkflowInput(request=req, policy=policy, received_at=datetime.now(UTC)),
            id=f"payout-{req.receipt_id}", task_queue=self.task_queue,
        )  # fmt: skip

    async def reaches(self, handle: Handle, status: S, timeout: float = 10.0) -> PayoutView:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            view = await handle.query(ReceiptPayout.status)
            if view.status == status:
                return view
            assert loop.time() < deadline, f"still {view.status}, expected {status}"
            await asyncio.sleep(0.05)

    async def decide(self, handle: Handle, name: str, cmd: Any) -> OperatorResult:
        return await handle.execute_update(name, cmd, result_type=OperatorResult)


@pytest.fixture
async def story(env: WorkflowEnvironment) -> AsyncIterator[Story]:
    fakes = Fakes()
    queue = f"story-{uuid.uuid4().hex[:8]}"
    # The SDK's full sandbox, not the worker's runner: the calls of the modules the worker shares across
    # payouts (workers.registry.SHARED_WORKFLOW_MODULES) are checked here.
    payouts = Worker(env.client, task_queue=queue, workflows=[ReceiptPayout], activities=fakes.payouts_activities(),
                     workflow_failure_exception_types=[Exception])  # fmt: skip
    portmone = Worker(env.client, task_queue=PORTMONE_TASK_QUEUE, activities=[fakes.create_bill])
    notify = Worker(env.client, task_queue=NOTIFY_TASK_QUEUE, activities=[fakes.remind])
    async with payouts, portmone, notify:
        story = Story(env, fakes, queue)
        yield story
        # A payout left waiting would hold the shared server's clock (its timers fire with no worker).
        for workflow_id in story.started:
            with contextlib.suppress(RPCError):
                await env.client.get_workflow_handle(workflow_id).terminate("test over")


async def event_types(handle: Handle) -> list[EventType.ValueType]:
    return [e.event_type for e in (await handle.fetch_history()).events]


async def test_happy_path_pays_once_with_only_the_commands_it_needs(story: Story) -> None:
    handle = await story.start()
    await story.reaches(handle, S.AWAITING_CALLBACK)
    await handle.signal(ReceiptPayout.portmone_callback, callback("B-1", Verdict.PAID))
    view = await handle.result()

    assert view.status == S.PAID and view.bill_id == "B-1"
    assert [c for c, _ in story.fakes.calls] == ["reserve", "create_bill", "topup", "transition"]
    paid = story.fakes.named("transition")[0]
    assert paid.to_status == S.PAID and paid.callback.callback_id == 1
    # What the workflow itself writes (workflow tasks aside, which the server adds around them): the
    # ledger steps as local-activity markers, bills.create and the top-up, two search-attribute upserts,
    # one timer. With the server's workflow tasks this stays within 30 events (test_replay holds the
    # recorded history to it); one more command here is a regression.
    E = EventType
    assert [e for e in await event_types(handle) if e not in WORKFLOW_TASK_EVENTS] == [
        E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, E.EVENT_TYPE_MARKER_RECORDED, E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
        E.EVENT_TYPE_ACTIVITY_TASK_STARTED, E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
        E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES, E.EVENT_TYPE_TIMER_STARTED,
        E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED, E.EVENT_TYPE_TIMER_CANCELED, E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
        E.EVENT_TYPE_ACTIVITY_TASK_STARTED, E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, E.EVENT_TYPE_MARKER_RECORDED,
        E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES, E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    ]  # fmt: skip


async def test_rejected_at_the_gate_never_creates_a_bill(story: Story) -> None:
    story.fakes.reserve_answer = ReserveOutput(accepted=False, reason="duplicate_fiscal_key")
    view = await (await story.start()).result()
    assert view.status == S.REJECTED and view.rejection_reason == "duplicate_fiscal_key"
    assert story.fakes.named("create_bill") == []


async def test_data_the_ledger_cannot_hold_is_rejected(story: Story) -> None:
    story.fakes.reserve_answer = ApplicationError("no", type=failures.BAD_PAYOUT_DATA, non_retryable=True)
    view = await (await story.start()).result()
    assert view.status == S.REJECTED and view.rejection_reason == f"invalid_data:{failures.BAD_PAYOUT_DATA}"


async def test_outcome_unknown_waits_for_a_confirmed_retry(story: Story) -> None:
    story.fakes.create_answers = [ApplicationError("lost", type=failures.OUTCOME_UNKNOWN, non_retryable=True)]
    story.fakes.open_bills = [OpenBillView(attempt_id=11, bill_id=None, verdict="unknown", text="attempt 11")]
    handle = await story.start()
    view = await story.reaches(handle, S.MANUAL_REVIEW)
    assert view.escalation_reason == "outcome_unknown" and view.open_bills == ["attempt 11"]

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await story.decide(handle, UpdateName.RETRY, OperatorRetry(operator="op", reason="checked"))
    assert "confirmed_no_bill_at_portmone" in str(refused.value.cause)
    result = await story.decide(handle, UpdateName.RETRY, OperatorRetry(operator="op", reason="checked",
                                                                confirmed_no_bill_at_portmone=True))  # fmt: skip
    assert result.accepted and "round 2" in result.message
    assert [c.attempt_id for c in story.fakes.named("audit")[-1].confirms] == [11]
    await story.reaches(handle, S.AWAITING_CALLBACK)
    assert [b.round_no for b in story.fakes.named("create_bill")] == [1, 2]


async def test_a_transient_decline_starts_a_new_round_after_the_back_off(story: Story) -> None:
    handle = await story.start()
    await story.reaches(handle, S.AWAITING_CALLBACK)
    await handle.signal(ReceiptPayout.portmone_callback, callback("B-1", Verdict.DECLINED_TRANSIENT, code="5"))
    await story.reaches(handle, S.RETRY_SCHEDULED)
    assert story.fakes.named("create_bill")[-1].round_no == 1
    await story.env.sleep(timedelta(seconds=POLICY.retry_backoff_seconds + 1))
    await story.reaches(handle, S.AWAITING_CALLBACK)
    await handle.signal(ReceiptPayout.portmone_callback, callback("B-2", Verdict.PAID, n=2))

    assert (await handle.result()).status == S.PAID
    retry = story.fakes.named("transition")[0]
    assert (retry.to_status, retry.reason) == (S.RETRY_SCHEDULED, "transient:5")
    assert [b.round_no for b in story.fakes.named("create_bill")] == [1, 2]


async def test_a_permanent_decline_goes_to_a_person(story: Story) -> None:
    handle = await story.start()
    await story.reaches(handle, S.AWAITING_CALLBACK)
    await handle.signal(ReceiptPayout.portmone_callback, callback("B-1", Verdict.DECLINED_PERMANENT, code="30"))
    view = await story.reaches(handle, S.MANUAL_REVIEW)
    assert view.escalation_reason == "permanent_error:30"
    assert story.fakes.named("escalate")[0].callback.callback_id == 1


async def test_timeout_reads_stored_callbacks_before_escalating(story: Story) -> None:
    story.fakes.stored_callbacks = [callback("B-1", Verdict.PAID, n=9)]
    handle = await story.start()
    await story.reaches(handle, S.AWAITING_CALLBACK)
    await story.env.sleep(timedelta(seconds=POLICY.callback_timeout_seconds + 1))
    assert (await handle.result()).status == S.PAID
    assert story.fakes.named("escalate") == []


async def test_a_late_paid_callback_completes_a_payout_in_manual_review(story: Story) -> None:
    story.fakes.open_bills = [OpenBillView(attempt_id=1, bill_id="B-1", verdict="live", text="bill B-1: open")]
    handle = await story.start()
    await story.reaches(handle, S.AWAITING_CALLBACK)
    await story.env.sleep(timedelta(seconds=POLICY.callback_timeout_seconds + 1))
    view = await story.reaches(handle, S.MANUAL_REVIEW)
    assert view.escalation_reason == "callback_timeout"
    assert view.open_bills == ["bill B-1: open"]
    await handle.signal(ReceiptPayout.portmone_callback, callback("B-1", Verdict.PAID))

    paid = await handle.result()
    assert paid.status == S.PAID
    assert paid.open_bills == []  # the view is derived from what the payout knows: nothing left open
    assert (await handle.query(ReceiptPayout.status)).open_bills == []
    assert [a.action for a in story.fakes.named("audit")] == ["late_callback"]
    assert story.fakes.named("transition")[-1].reason == "late_ok_callback"


async def test_retry_after_a_failed_top_up_repeats_only_the_top_up(story: Story) -> None:
    story.fakes.topup_failures = [ApplicationError("refused", type=failures.TELECOM_REFUSED, non_retryable=True)]
    handle = await story.start()
    await story.reaches(handle, S.AWAITING_CALLBACK)
    await handle.signal(ReceiptPayout.portmone_callback, callback("B-1", Verdict.PAID))
    view = await story.reaches(handle, S.MANUAL_REVIEW)
    assert view.escalation_reason == "telecom_failed"

    result = await story.decide(handle, UpdateName.RETRY, OperatorRetry(operator="op", reason="telecom is back"))
    assert result.accepted and "no new bill" in result.message
    assert (await handle.result()).status == S.PAID
    assert len(story.fakes.named("create_bill")) == 1 and len(story.fakes.named("topup")) == 2


async def test_mark_paid_needs_a_reference_and_closes_the_payout(story: Story) -> None:
    handle = await story.start()
    await story.reaches(handle, S.AWAITING_CALLBACK)
    await story.env.sleep(timedelta(seconds=POLICY.callback_timeout_seconds + 1))
    await story.reaches(handle, S.MANUAL_REVIEW)

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await story.decide(handle, UpdateName.MARK_PAID, OperatorMarkPaid(operator="op", reason="paid by hand"))
    assert "external_reference" in str(refused.value.cause)
    result = await story.decide(handle, UpdateName.MARK_PAID, OperatorMarkPaid(operator="op", reason="paid by hand",
                                                                      external_reference="PM-1"))  # fmt: skip
    assert result.accepted
    assert (await handle.result()).status == S.PAID
    assert story.fakes.named("transition")[-1].reason == "operator:PM-1"
    assert story.fakes.named("audit")[0].reference == "PM-1"


async def test_cancel_closes_the_payout_and_a_repeat_gets_the_same_answer(story: Story) -> None:
    handle = await story.start()
    await story.reaches(handle, S.AWAITING_CALLBACK)
    await story.env.sleep(timedelta(seconds=POLICY.callback_timeout_seconds + 1))
    await story.reaches(handle, S.MANUAL_REVIEW)
    cmd = OperatorCancel(operator="op", reason="duplicate shopper")
    first = await handle.execute_update(UpdateName.CANCEL, cmd, id="cancel-1", result_type=OperatorResult)
    again = await handle.execute_update(UpdateName.CANCEL, cmd, id="cancel-1", result_type=OperatorResult)

    assert first == again and first.accepted
    assert (await handle.result()).status == S.CANCELLED
    assert len(story.fakes.named("audit")) == 1


async def test_an_update_outside_manual_review_is_refused(story: Story) -> None:
    handle = await story.start()
    await story.reaches(handle, S.AWAITING_CALLBACK)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await story.decide(handle, UpdateName.CANCEL, OperatorCancel(operator="op", reason="no"))
    assert "not MANUAL_REVIEW" in str(refused.value.cause)


async def test_a_cancellation_request_becomes_a_manual_review_item(story: Story) -> None:
    handle = await story.start()
    await story.reaches(handle, S.AWAITING_CALLBACK)
    await handle.cancel()
    view = await story.reaches(handle, S.MANUAL_REVIEW)
    assert view.escalation_reason == "cancellation_requested" and view.cancel_requested
    assert [a.action for a in story.fakes.named("audit")] == ["cancellation_requested"]


async def test_a_refused_step_follows_the_ledger(story: Story) -> None:
    story.fakes.refuse_transition_to = S.PAID
    story.fakes.ledger_status = S.CANCELLED
    handle = await story.start()
    await story.reaches(handle, S.AWAITING_CALLBACK)
    await handle.signal(ReceiptPayout.portmone_callback, callback("B-1", Verdict.PAID))
    assert (await handle.result()).status == S.CANCELLED
    assert story.fakes.named("state")


async def test_manual_review_continues_as_new_and_keeps_its_evidence(story: Story) -> None:
    policy = POLICY.model_copy(update={"manual_reminder_seconds": 300, "reminders_per_run": 2})
    story.fakes.create_answers = [ApplicationError("lost", type=failures.OUTCOME_UNKNOWN, non_retryable=True)]
    story.fakes.open_bills = [OpenBillView(attempt_id=3, bill_id="B-1", verdict="live", text="bill B-1")]
    handle = await story.start(policy)
    first_run = (await handle.describe()).run_id
    await story.reaches(handle, S.MANUAL_REVIEW)
    await story.env.sleep(timedelta(seconds=3 * 300 + 1))

    latest = story.env.client.get_workflow_handle_for(ReceiptPayout.run, handle.id)
    assert (await latest.describe()).run_id != first_run
    view = await latest.query(ReceiptPayout.status)
    assert view.status == S.MANUAL_REVIEW and view.open_bills == ["bill B-1"]
    assert len(story.fakes.named("remind")) >= 2
    mark = OperatorMarkPaid(operator="op", reason="r", external_reference="X")
    result = await latest.execute_update(UpdateName.MARK_PAID, mark, result_type=OperatorResult)
    assert result.accepted
