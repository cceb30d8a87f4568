"""`POST /v1/receipts/accepted`: validate, encrypt the phone at once, start the payout idempotently."""

from __future__ import annotations

import json
import logging

from aiohttp import web
from pydantic import ValidationError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from payouts import log_context
from payouts import search_attributes as sa
from payouts.models import PAYOUT_WORKFLOW_TYPE, PayoutRequest, PayoutWorkflowInput, payout_workflow_id
from payouts.msisdn import MsisdnError, mask_msisdn
from payouts.workflow_text import static_summary
from webhook.body import BodyRefused, read_body
from webhook.deps import WebhookDeps
from webhook.errors import error, validation_error
from webhook.intake_model import AcceptedReceipt
from webhook.keys import DEPS
from webhook.refusal import Endpoint, Refused, refuse

_log = logging.getLogger("payouts.webhook.intake")


async def accept_receipt(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    # The whole body first (413 over WEBHOOK_MAX_BODY_BYTES, 408 when it is too slow): a signature covers it.
    limits = deps.settings.webhook
    try:
        raw = await read_body(request, limit=limits.max_body_bytes, timeout=limits.body_timeout_seconds)
    except BodyRefused as exc:
        return exc.response()
    try:
        deps.intake_auth.check(request, raw)
    except Refused as refused:
        return refuse(Endpoint.INTAKE, refused)
    if request.content_type != "application/json":
        return error(415, "send the receipt as application/json")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly nested JSON
        return error(400, "body is not valid JSON")
    if not isinstance(body, dict):
        return error(400, "body must be a JSON object")
    try:
        receipt = AcceptedReceipt.model_validate(body)
    except ValidationError as exc:
        return validation_error(exc)

    try:
        payout_request = to_payout_request(receipt, deps)
    except MsisdnError as exc:
        return error(422, "invalid request", fields=[{"field": "msisdn_token", "message": str(exc)}])
    except ValidationError as exc:  # a derived field out of the workflow input's bounds
        return validation_error(exc)

    workflow_id = payout_workflow_id(receipt.receipt_id)
    log_context.bind(telegram_id=receipt.telegram_id, **log_context.ids_of_workflow(workflow_id))
    try:
        await deps.temporal.start_workflow(
            PAYOUT_WORKFLOW_TYPE,
            PayoutWorkflowInput(request=payout_request, policy=deps.policy),
            id=workflow_id,
            task_queue=deps.settings.temporal.task_queue,
            # FAIL, not USE_EXISTING: the public answer to "did this request start it?" is the
            # WorkflowAlreadyStartedError below; the running payout is untouched either way.
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=sa.initial(receipt.receipt_id, receipt.amount_kopecks),
            static_summary=static_summary(
                receipt.receipt_id, receipt.amount_kopecks, receipt.currency, payout_request.masked_msisdn
            ),
        )
        new = True
    except WorkflowAlreadyStartedError:
        # The payout is running (conflict policy FAIL) or already ran to its end (reuse policy
        # REJECT_DUPLICATE): the duplicate changes nothing.
        new = False
    except RPCError as exc:
        _log.error("receipt %s: Temporal refused the start (%s)", receipt.receipt_id, exc.status)
        return error(503, "cannot start the payout now; retry later")
    _log.info("receipt %s -> %s (%s)", receipt.receipt_id, workflow_id, "new" if new else "existing")
    return web.json_response(
        {"workflow_id": workflow_id, "status": "started" if new else "existing", "new": new}, status=202
    )


def to_payout_request(receipt: AcceptedReceipt, deps: WebhookDeps) -> PayoutRequest:
    """Encrypt a plaintext phone (or check a given token) so only a token enters Temporal."""
    vault = deps.vault
    if receipt.msisdn is not None:
        msisdn = receipt.msisdn
        token = vault.encrypt(msisdn)
    else:
        assert receipt.msisdn_token is not None
        token = receipt.msisdn_token
        msisdn = vault.decrypt(token)
    return PayoutRequest(
        receipt_id=receipt.receipt_id,
        telegram_id=receipt.telegram_id,
        msisdn_token=token,
        masked_msisdn=mask_msisdn(msisdn),
        user_key=vault.digest(msisdn),
        amount_kopecks=receipt.amount_kopecks,
        currency=receipt.currency,
        payee_id=receipt.payee_id,
        fiscal_key=receipt.fiscal_key,
        accepted_at=receipt.accepted_at,
        language=receipt.language or deps.settings.telegram.default_language,
    )
