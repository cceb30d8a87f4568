"""The Temporal Schedules of scheduled maintenance, created or updated idempotently.

`payouts schedules` (run once per deployment) and `payouts dev` call `ensure_schedules`. Workers do
not: several worker replicas starting at once would race to rewrite the same schedules.

| schedule id | workflow | when (Europe/Kyiv) |
|---|---|---|
| `payouts-reconciliation` | ReconciliationWorkflow (previous day's report) | daily 01:30 |
| `payouts-archive-retention` | ArchiveRetentionWorkflow | daily 02:30 |

Both skip a run while the previous one is still going (overlap SKIP). An operator's pause survives
a re-run of `payouts schedules`.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from payouts.models import ReconcileInput
from payouts.names import WorkflowName

RECONCILIATION_SCHEDULE_ID = "payouts-reconciliation"
RETENTION_SCHEDULE_ID = "payouts-archive-retention"
TIME_ZONE = "Europe/Kyiv"


def _daily(hour: int, minute: int) -> ScheduleSpec:
    return ScheduleSpec(
        calendars=[ScheduleCalendarSpec(hour=[ScheduleRange(hour)], minute=[ScheduleRange(minute)])],
        time_zone_name=TIME_ZONE,
    )


def _policy() -> SchedulePolicy:
    # A missed run (Temporal down) is caught up within 6 hours; a run still going skips the next.
    return SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(hours=6))


def desired_schedules(task_queue: str) -> dict[str, Schedule]:
    return {
        RECONCILIATION_SCHEDULE_ID: Schedule(
            action=ScheduleActionStartWorkflow(
                WorkflowName.RECONCILIATION,
                ReconcileInput(),
                id="payouts-reconciliation",
                task_queue=task_queue,
                execution_timeout=timedelta(hours=2),
                static_summary="Daily reconciliation: ledger vs workflows vs Portmone callbacks",
            ),
            spec=_daily(1, 30),
            policy=_policy(),
        ),
        RETENTION_SCHEDULE_ID: Schedule(
            action=ScheduleActionStartWorkflow(
                WorkflowName.ARCHIVE_RETENTION,
                id="payouts-archive-retention",
                task_queue=task_queue,
                execution_timeout=timedelta(hours=2),
                static_summary="Daily exchange-archive retention (LEDGER_ARCHIVE_RETENTION_DAYS)",
            ),
            spec=_daily(2, 30),
            policy=_policy(),
        ),
    }


async def ensure_schedules(client: Client, task_queue: str) -> list[tuple[str, str]]:
    """Create each schedule, or bring an existing one to the desired definition (keeping a pause).
    Returns (schedule id, "created" | "updated") pairs."""
    done: list[tuple[str, str]] = []
    for schedule_id, schedule in desired_schedules(task_queue).items():
        try:
            await client.create_schedule(schedule_id, schedule)
            done.append((schedule_id, "created"))
        except ScheduleAlreadyRunningError:

            def keep_state(current: ScheduleUpdateInput, desired: Schedule = schedule) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=dataclasses.replace(desired, state=current.description.schedule.state))

            await client.get_schedule_handle(schedule_id).update(keep_state)
            done.append((schedule_id, "updated"))
    return done
