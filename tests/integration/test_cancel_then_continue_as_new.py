"""On the real server (the dev server), a payout that was asked to cancel, and then waits long enough
in manual review to continue as new, keeps its state in the new run. (The Java time-skipping server
hangs such a continue-as-new, which is why the property test keeps its runs short of it.)"""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio.client import WorkflowExecutionStatus

from payouts.models import PayoutPolicy, PayoutView, PayoutWorkflowInput
from payouts.msisdn import vault_from_settings
from payouts.names import STATUS_QUERY
from payouts.receipt import AcceptedReceipt, to_payout_request
from payouts.status import PayoutStatus as S
from tests.faults import eventually
from tests.stack import Stack
from workflows.receipt_payout import ReceiptPayout


async def test_a_cancelled_payout_in_manual_review_continues_as_new_with_its_state(stack: Stack) -> None:
    await stack.faults({"fail_codes": {"13": {"times": 1}}})
    settings = stack.settings
    vault = vault_from_settings(settings.crypto.fernet_key_list(), settings.crypto.hmac_key.get_secret_value())
    request = to_payout_request(AcceptedReceipt.model_validate(stack.receipt()), vault, "uk")
    # Started as intake would, with reminders every second (below the settings' floor, which guards
    # production) so that the run continues as new within the test.
    handle = await stack.client.start_workflow(
        ReceiptPayout.run,
        PayoutWorkflowInput(request=request, policy=PayoutPolicy(manual_reminder_seconds=1, reminders_per_run=3),
                            received_at=datetime.now(UTC)),
        id=f"payout-{request.receipt_id}",
        task_queue=settings.temporal.task_queue,
    )
    stack.started.append(handle.id)
    await stack.wait_status(handle, {S.MANUAL_REVIEW})
    first_run = (await handle.describe()).run_id
    await handle.cancel()
    latest = stack.client.get_workflow_handle(handle.id)

    async def continued() -> bool:
        return (await latest.describe()).run_id != first_run

    await eventually(continued, timeout=30)
    described = await latest.describe()
    view = await latest.query(STATUS_QUERY, result_type=PayoutView)
    assert described.status == WorkflowExecutionStatus.RUNNING
    assert (view.status, view.escalation_reason, view.cancel_requested) == (S.MANUAL_REVIEW, "permanent_error:13", True)
    actions = [r.action for r in await stack.ledger.operator_actions.for_payout(handle.id)]
    assert actions == ["cancellation_requested"]
