"""`payouts worker` takes its tuning from WORKER_* (docs/configuration.md): the sticky cache decides
whether a payout's next workflow task goes to the worker that holds it in memory or is replayed from
its history, and a payout is paid either way."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType, TaskQueueKind
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from payouts.status import PayoutStatus
from runtime.settings import WorkerSettings
from tests.cli_helpers import clean_env, payouts, payouts_process, stop_cleanly
from tests.stack import Stack, running_stack, settings_env

pytestmark = pytest.mark.integration


async def _paid_with_a_worker(stack: Stack, log: Path, receipt_id: str, **worker_env: str) -> WorkflowHandle[Any, Any]:
    """One receipt paid by a `payouts worker` process started with `worker_env`, then stopped (SIGTERM)."""
    env = {**os.environ, **settings_env(stack.settings), **worker_env}
    with payouts_process("worker", env=env, log=log) as worker:
        handle = await stack.submit(receipt_id=receipt_id)
        await stack.wait_status(handle, [PayoutStatus.PAID], timeout=60)
        await stop_cleanly(worker, log)
    return handle


async def _task_queue_kinds(handle: WorkflowHandle[Any, Any]) -> list[int]:
    """The kind of task queue each of the payout's workflow tasks was scheduled on."""
    history = await handle.fetch_history()
    return [e.workflow_task_scheduled_event_attributes.task_queue.kind for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED]  # fmt: skip


async def test_the_sticky_cache_setting_reaches_the_worker_and_a_payout_is_paid_with_or_without_it(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with running_stack(dev_env.client, tmp_path, workers=False) as stack:
        cached = await _paid_with_a_worker(stack, tmp_path / "cached.log", "tuning-cached")
        replayed = await _paid_with_a_worker(stack, tmp_path / "replayed.log", "tuning-replayed",
                                             WORKER_MAX_CACHED_WORKFLOWS="0")  # fmt: skip

    sticky = TaskQueueKind.TASK_QUEUE_KIND_STICKY
    # Cached (the default): after the first task, the payout's tasks go to the worker that holds it.
    assert WorkerSettings().max_cached_workflows > 0
    cached_kinds = await _task_queue_kinds(cached)
    assert cached_kinds[0] != sticky and sticky in cached_kinds[1:]
    # No cache: every task is replayed from the history by whichever worker polls the payouts queue.
    replayed_kinds = await _task_queue_kinds(replayed)
    assert len(replayed_kinds) > 1 and sticky not in replayed_kinds


def test_a_tuning_value_out_of_range_is_named_and_nothing_starts(tmp_path: Path) -> None:
    result = payouts("worker", env=clean_env(PAYOUTS_ENV="dev", WORKER_MAX_CACHED_WORKFLOWS="-5",
                                             WORKER_MAX_CONCURRENT_WORKFLOW_TASKS="1"), cwd=tmp_path)  # fmt: skip

    assert result.returncode == 2
    assert "WORKER_MAX_CACHED_WORKFLOWS" in result.stderr
    assert "WORKER_MAX_CONCURRENT_WORKFLOW_TASKS" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / ".data").exists()
