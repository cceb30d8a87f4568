"""A workflow reset (the Web UI's Reset button, `temporal workflow reset`) makes a new run of the same
payout: it must follow the ledger, not take itself for a duplicate of its own receipt."""

from __future__ import annotations

import uuid

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import WorkflowExecutionStatus

from payouts.models import PayoutView
from payouts.status import PayoutStatus as S
from tests.faults import eventually
from tests.stack import Stack


async def test_a_reset_payout_follows_the_ledger_instead_of_rejecting_itself(stack: Stack) -> None:
    handle = await stack.submit()
    assert (await stack.wait_status(handle, {S.PAID})).status == S.PAID
    first = await handle.describe()
    history = await handle.fetch_history()
    completed = EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    first_task = next(e.event_id for e in history.events if e.event_type == completed)

    reset = await stack.client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=stack.client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=handle.id, run_id=first.run_id),
            reason="operator pressed Reset",
            workflow_task_finish_event_id=first_task,
            request_id=str(uuid.uuid4()),
        )
    )
    latest = stack.client.get_workflow_handle(handle.id, run_id=reset.run_id, result_type=PayoutView)

    async def closed() -> bool:
        return (await latest.describe()).status != WorkflowExecutionStatus.RUNNING

    await eventually(closed)
    result = await latest.result()
    assert (await latest.describe()).status == WorkflowExecutionStatus.COMPLETED
    assert result.status == S.PAID and result.rejection_reason is None  # not "duplicate_receipt"
    assert len(await stack.creates()) == 1
    assert [h.to_status for h in await stack.ledger.payouts.history(handle.id)][-1] == S.PAID
