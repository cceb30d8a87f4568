"""`payouts ops retry | mark-paid | cancel`: send the workflow's update; its validator has the last word.

The validator's message is shown as it is. Each call carries an update id (`--update-id`, default a
fresh one, printed): sending the same id again returns the first answer and changes nothing.
"""

from __future__ import annotations

import asyncio
import shlex
import uuid
from collections.abc import Sequence

from pydantic import BaseModel
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from console.ops.context import Ops, OpsError
from console.reach import Unreachable, temporal_problem
from payouts.models import OperatorCancel, OperatorMarkPaid, OperatorResult, OperatorRetry
from payouts.names import UpdateName

# The command line's words for the updates: `mark-paid` for `mark_paid`.
UPDATE_NAMES: dict[str, UpdateName] = {name.value.replace("_", "-"): name for name in UpdateName}
CONFIRM_FLAG = "--confirm-no-bill-at-portmone"


def suggested_commands(payout_id: str, flags: Sequence[str], *, confirm: bool) -> list[str]:
    """The decision commands `ops show` offers, whole and ready to run once NAME, TEXT and REF are filled
    in (`confirm`: the payout lists bills that may hold money, so retry and cancel need the flag)."""
    who = ["--operator", "NAME", "--reason", "TEXT"]
    confirmation = [CONFIRM_FLAG] if confirm else []
    return [shlex.join(argv) for argv in (
        ["payouts", "ops", "mark-paid", payout_id, *flags, *who, "--reference", "REF"],
        ["payouts", "ops", "retry", payout_id, *flags, *who, *confirmation],
        ["payouts", "ops", "cancel", payout_id, *flags, *who, *confirmation],
    )]


def in_cli_words(hint: str, payout_id: str, flags: Sequence[str]) -> str:
    """An escalation hint (written for the Web UI's updates) with the command line's names: `mark_paid`
    is `mark-paid` here, and `payouts ops show` needs the payout."""
    for action, update in UPDATE_NAMES.items():
        hint = hint.replace(f"`{update}`", f"`{action}`")
    return hint.replace("`payouts ops show`", f"`{shlex.join(['payouts', 'ops', 'show', payout_id, *flags])}`")


def new_update_id() -> str:
    return f"ops-{uuid.uuid4().hex}"


def command_for(
    action: str, *, operator: str, reason: str, reference: str = "", confirm_no_bill: bool = False
) -> BaseModel:
    if action == "retry":
        return OperatorRetry(operator=operator, reason=reason, confirmed_no_bill_at_portmone=confirm_no_bill)
    if action == "mark-paid":
        return OperatorMarkPaid(operator=operator, reason=reason, external_reference=reference)
    if action == "cancel":
        return OperatorCancel(operator=operator, reason=reason, confirmed_no_bill_at_portmone=confirm_no_bill)
    raise ValueError(action)


def _refusal(exc: WorkflowUpdateFailedError) -> str:
    cause = exc.cause
    while isinstance(cause, ApplicationError) and cause.cause is not None and not cause.message:
        cause = cause.cause
    return cause.message if isinstance(cause, ApplicationError) else str(cause or exc)


async def send(ops: Ops, payout_id: str, action: str, command: BaseModel, update_id: str,
               timeout: float) -> OperatorResult:
    """The update's answer; OpsError with the reason when it is refused or cannot be delivered."""
    name = UPDATE_NAMES[action]
    handle = ops.client.get_workflow_handle(payout_id)
    try:
        async with asyncio.timeout(timeout):
            result: OperatorResult = await handle.execute_update(
                name, command, id=update_id, result_type=OperatorResult
            )
    except WorkflowUpdateFailedError as exc:
        raise OpsError(f"{action} refused for {payout_id}: {_refusal(exc)}") from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise OpsError(f"{action} refused for {payout_id}: no running payout workflow ({exc.message})") from None
        if exc.status == RPCStatusCode.UNAVAILABLE:
            raise Unreachable([temporal_problem(ops.settings.temporal.address, exc)]) from None
        raise OpsError(f"{action} could not be delivered to {payout_id}: {exc.message}") from None
    except TimeoutError:
        raise OpsError(
            f"{action} for {payout_id}: no answer within {timeout:.0f}s (is a worker running?). The update may "
            f"still apply: repeat with --update-id {update_id} to get its answer without a second effect"
        ) from None
    return result
