"""The one start path of a payout: HTTP intake, the `receipt.accepted` queue and tests all come here.

A payout is the workflow `payout-{receipt_id}` of type `payouts.names.WorkflowName.PAYOUT`, started by
type name so no starter imports a workflow class. Conflict policy FAIL and reuse policy REJECT_DUPLICATE make a
second start of the same receipt, running or closed, change nothing: it answers `existing`. When the
second request differs from the one that started the payout in a field that decides who is paid what,
it answers `existing_differs` and names those fields; the payout keeps its own request either way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from payouts import search_attributes as sa
from payouts.models import (
    PayoutPolicy,
    PayoutRequest,
    PayoutWorkflowInput,
    payout_workflow_id,
)
from payouts.names import WorkflowName
from payouts.workflow_text import static_summary
from runtime.settings import PayoutSettings, Settings

# Request fields compared with the payout's own request, by the name the intake body gives them.
# The phone is compared by its keyed digest (`user_key`), never in plaintext. `accepted_at` and
# `language` are left out: a resend may stamp a new time, and neither changes who is paid what.
_COMPARED: dict[str, str] = {
    "telegram_id": "telegram_id",
    "msisdn": "user_key",
    "amount_kopecks": "amount_kopecks",
    "currency": "currency",
    "payee_id": "payee_id",
    "fiscal_key": "fiscal_key",
}

_log = logging.getLogger("payouts.start")


class StartOutcome(StrEnum):
    STARTED = "started"  # this request started the payout
    EXISTING = "existing"  # the payout exists (running or closed); same request
    EXISTING_DIFFERS = "existing_differs"  # the payout exists, started by a request that differs


@dataclass(frozen=True)
class StartResult:
    workflow_id: str
    outcome: StartOutcome
    differing: tuple[str, ...] = ()  # intake field names, for EXISTING_DIFFERS

    @property
    def new(self) -> bool:
        return self.outcome is StartOutcome.STARTED


class StartUnavailable(Exception):
    """Temporal did not confirm the start (unreachable, or refused the call): try again later."""


def payout_policy(settings: PayoutSettings) -> PayoutPolicy:
    """The timing a payout keeps for life, copied from the starter's settings (workflows read no env)."""
    return PayoutPolicy(
        callback_timeout_seconds=settings.callback_timeout_seconds,
        max_bill_rounds=settings.max_bill_rounds,
        retry_backoff_seconds=settings.retry_backoff_seconds,
        manual_reminder_seconds=settings.manual_reminder_seconds,
        reminders_per_run=settings.reminders_per_run,
        bill_attempt_timeout_seconds=settings.bill_attempt_timeout_seconds,
    )


async def start_payout(client: Client, request: PayoutRequest, settings: Settings) -> StartResult:
    """Start the receipt's payout, or find the one that exists; raises StartUnavailable."""
    workflow_id = payout_workflow_id(request.receipt_id)
    try:
        await client.start_workflow(
            WorkflowName.PAYOUT,
            PayoutWorkflowInput(request=request, policy=payout_policy(settings.payout), received_at=datetime.now(UTC)),
            id=workflow_id,
            task_queue=settings.temporal.task_queue,
            # FAIL, not USE_EXISTING: the answer to "did this request start it?" is the
            # WorkflowAlreadyStartedError below; the running payout is untouched either way.
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=sa.initial(request.receipt_id, request.amount_kopecks),
            static_summary=static_summary(
                request.receipt_id, request.amount_kopecks, request.currency, request.masked_msisdn
            ),
        )
    except WorkflowAlreadyStartedError:
        # Running (conflict policy FAIL) or already ended (reuse policy REJECT_DUPLICATE).
        original = await _started_with(client, workflow_id)
        differing = differing_fields(original, request) if original is not None else ()
        outcome = StartOutcome.EXISTING_DIFFERS if differing else StartOutcome.EXISTING
        return StartResult(workflow_id, outcome, differing)
    except RPCError as exc:
        raise StartUnavailable(f"Temporal did not start {workflow_id} ({exc.status.name})") from exc
    return StartResult(workflow_id, StartOutcome.STARTED)


def differing_fields(original: PayoutRequest, new: PayoutRequest) -> tuple[str, ...]:
    """The intake fields in which `new` differs from the request that started the payout."""
    return tuple(name for name, attr in _COMPARED.items() if getattr(original, attr) != getattr(new, attr))


async def _started_with(client: Client, workflow_id: str) -> PayoutRequest | None:
    """The request in the input of the payout's latest run (a run continued as new carries the same
    request), or None when it cannot be read: the duplicate then answers plain `existing`."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        async for event in handle.fetch_history_events(page_size=1):
            started = event.workflow_execution_started_event_attributes
            [value] = await client.data_converter.decode(started.input.payloads, [PayoutWorkflowInput])
            return value.request if isinstance(value, PayoutWorkflowInput) else None
    except RPCError as exc:
        raise StartUnavailable(f"Temporal did not answer for {workflow_id} ({exc.status.name})") from exc
    except Exception as exc:  # an input this version cannot read (an older or newer payload shape)
        _log.warning("%s: cannot read the request that started it (%s)", workflow_id, type(exc).__name__)
    return None
