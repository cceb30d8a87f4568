"""The consumer at work in a test: running it on a stack, and what to ask afterwards (paid once,
drained, counted). Shared by the modules of tests/rabbit that run the whole flow; the `stack`
fixture is in conftest.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from temporalio.client import Client

from payouts.models import payout_workflow_id
from payouts.status import PayoutStatus as S
from rabbit.consumer import ReceiptConsumer
from rabbit.main import build_consumer
from runtime.settings import RabbitSettings
from tests.faults import eventually
from tests.metrics import in_process
from tests.rabbit.helpers import Broker
from tests.stack import Stack

SETTLED = {S.PAID, S.MANUAL_REVIEW, S.REJECTED, S.CANCELLED, S.FAILED}


@asynccontextmanager
async def consuming(stack: Stack, rabbit: RabbitSettings, client: Any = None) -> AsyncIterator[ReceiptConsumer]:
    """The consumer running in this process on the stack's settings, stopped (gracefully) at the end."""
    settings = stack.settings.model_copy(update={"rabbit": rabbit})
    consumer = build_consumer(settings, cast(Client, client or stack.client))
    task = asyncio.create_task(consumer.run())
    try:
        await asyncio.wait_for(consumer.consuming.wait(), 20)
        yield consumer
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 60)


def counted(outcome: str) -> float:
    return in_process().value("payout_queue_messages_total", outcome=outcome)


def dead_lettered(reason: str) -> float:
    return in_process().value("payout_queue_dead_letters_total", reason=reason)


async def paid_once(stack: Stack, receipt_id: str) -> None:
    """The receipt's payout ended PAID, with one bill, in one workflow execution."""
    workflow_id = payout_workflow_id(receipt_id)
    stack.started.append(workflow_id)
    view = await stack.wait_status(stack.client.get_workflow_handle(workflow_id), SETTLED, timeout=60)
    assert view.status == S.PAID
    creates = [c for c in await stack.creates() if receipt_id in str(c)]
    assert len(creates) == 1, creates
    executions = [w async for w in stack.client.list_workflows(f'WorkflowId="{workflow_id}"')]
    assert len(executions) == 1


async def drained(broker: Broker, queue: str) -> None:
    async def empty() -> bool:
        return await broker.count(queue) == 0

    await eventually(empty, timeout=30)
