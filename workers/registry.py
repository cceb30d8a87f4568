"""Which workflows and activities run on which task queue."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.bill import BillActivities
from activities.ledger import LedgerActivities
from activities.notify import NotifyActivities
from activities.reconcile import ReconcileActivities
from activities.retention import RetentionActivities
from activities.telecom import TelecomActivities
from notify import Relay
from runtime.log_context import ActivityLogContext
from runtime.settings import WorkerSettings
from workflows.archive_retention import ArchiveRetentionWorkflow
from workflows.payout_calls import NOTIFY_TASK_QUEUE, PORTMONE_TASK_QUEUE
from workflows.receipt_payout import ReceiptPayout
from workflows.reconciliation import ReconciliationWorkflow

WORKFLOWS: Sequence[type] = (ReceiptPayout, ReconciliationWorkflow, ArchiveRetentionWorkflow)
_log = logging.getLogger("payouts.worker")

# The payout workflow's mechanics: loaded once per process instead of once per payout the worker loads
# (about half the CPU of replaying an evicted payout, and most of a cached payout's memory:
# docs/performance.md). They only call temporalio.workflow and the kernel, so they are deterministic
# outside the sandbox as well; `receipt_payout` itself stays sandboxed. The tests run them sandboxed
# (tests/workflows/test_story.py, tests/test_replay.py), and tests/workers/test_runner.py holds their imports.
SHARED_WORKFLOW_MODULES = (
    "workflows.payout_state",
    "workflows.payout_calls",
    "workflows.ledger_steps",
    "workflows.payout_view",
    "workflows.operator_decisions",
)


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox with SHARED_WORKFLOW_MODULES passed through."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*SHARED_WORKFLOW_MODULES)
    )


@dataclass
class ActivitySet:
    ledger: LedgerActivities
    bill: BillActivities
    telecom: TelecomActivities
    notify: NotifyActivities
    # Scheduled maintenance (reconciliation, archive retention); on the payouts task queue.
    reconcile: ReconcileActivities | None = None
    retention: RetentionActivities | None = None
    # Delivers the ledger's payout events (user messages, analytics) beside the workers; not an activity.
    relay: Relay | None = None

    def payout_activities(self) -> list[Callable[..., Any]]:
        return [
            self.ledger.reserve,
            self.ledger.transition,
            self.ledger.escalate,
            self.ledger.undelivered_callbacks,
            self.ledger.state,
            self.ledger.record_operator_action,
            self.telecom.topup,
            *self.maintenance_activities(),
        ]

    def portmone_activities(self) -> list[Callable[..., Any]]:
        return [self.bill.create_bill]

    def maintenance_activities(self) -> list[Callable[..., Any]]:
        found: list[Callable[..., Any]] = []
        if self.reconcile is not None:
            found.append(self.reconcile.run)
        if self.retention is not None:
            found.append(self.retention.prune)
        return found

    def notify_activities(self) -> list[Callable[..., Any]]:
        return [self.notify.remind_operators]


def build_workers(
    client: Client,
    activities: ActivitySet,
    *,
    task_queue: str,
    tuning: WorkerSettings,
    graceful_shutdown: timedelta = timedelta(seconds=30),
    **worker_kwargs: Any,
) -> list[Worker]:
    """Three workers: payouts (workflows, ledger, telecom), Portmone (bills.create, under the request-rate
    cap) and notifications (Telegram), so neither a slow Telegram nor the Portmone cap starves the
    payouts queue. Each activity logs with its payout's ids (ActivityLogContext); tracing comes with the
    client's interceptors."""
    worker_kwargs["interceptors"] = [ActivityLogContext(), *worker_kwargs.get("interceptors", [])]
    activity_kwargs = {k: v for k, v in worker_kwargs.items() if k != "workflow_failure_exception_types"}
    payouts = Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        workflow_runner=workflow_runner(),
        activities=activities.payout_activities(),
        graceful_shutdown_timeout=graceful_shutdown,
        max_concurrent_activities=tuning.max_concurrent_activities,
        max_concurrent_local_activities=tuning.max_concurrent_local_activities,
        max_concurrent_workflow_tasks=tuning.max_concurrent_workflow_tasks,
        max_cached_workflows=tuning.max_cached_workflows,
        **worker_kwargs,
    )

    def activities_only(queue: str, registered: list[Callable[..., Any]], **extra: Any) -> Worker:
        return Worker(
            client,
            task_queue=queue,
            activities=registered,
            graceful_shutdown_timeout=graceful_shutdown,
            max_concurrent_activities=tuning.max_concurrent_activities,
            **extra,
            **activity_kwargs,
        )

    portmone = activities_only(PORTMONE_TASK_QUEUE, activities.portmone_activities(),
                               max_task_queue_activities_per_second=tuning.portmone_requests_per_second)  # fmt: skip
    notify = activities_only(NOTIFY_TASK_QUEUE, activities.notify_activities())
    return [payouts, portmone, notify]


@asynccontextmanager
async def relay_running(activities: ActivitySet) -> AsyncIterator[None]:
    """The outbox relay beside the workers: started before them, stopped after them."""
    if activities.relay is None:
        yield
        return
    async with activities.relay.running():
        _log.info("outbox relay delivering to %s", ", ".join(c.name for c in activities.relay.channels))
        yield
