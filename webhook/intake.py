"""`POST /v1/receipts/accepted`: validate, encrypt the phone at once, start the payout idempotently."""

from __future__ import annotations

import logging

from aiohttp import web
from pydantic import ValidationError

from payouts.models import payout_workflow_id
from payouts.msisdn import MsisdnError
from payouts.receipt import AcceptedReceipt, NotJson, read_json, to_payout_request
from runtime import log_context
from runtime.start import StartOutcome, StartResult, StartUnavailable, start_payout
from webhook.body import BodyRefused, read_body
from webhook.errors import error, validation_error
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
        body = read_json(raw)
    except NotJson:
        return error(400, "body is not valid UTF-8 JSON")
    if not isinstance(body, dict):
        return error(400, "body must be a JSON object")
    try:
        receipt = AcceptedReceipt.model_validate(body)
    except ValidationError as exc:
        return validation_error(exc)

    try:
        payout_request = to_payout_request(receipt, deps.vault, deps.settings.telegram.default_language)
    except MsisdnError as exc:
        return error(422, "invalid request", fields=[{"field": "msisdn_token", "message": str(exc)}])
    except ValidationError as exc:  # a derived field out of the workflow input's bounds
        return validation_error(exc)

    workflow_id = payout_workflow_id(receipt.receipt_id)
    log_context.bind(telegram_id=receipt.telegram_id, **log_context.ids_of_workflow(workflow_id))
    try:
        started = await start_payout(deps.temporal, payout_request, deps.settings)
    except StartUnavailable as exc:
        _log.error("receipt %s: %s", receipt.receipt_id, exc)
        return error(503, "cannot start the payout now; retry later")
    _log.info("receipt %s -> %s (%s)", receipt.receipt_id, started.workflow_id, started.outcome.value)
    if started.outcome is StartOutcome.EXISTING_DIFFERS:
        return conflicting_duplicate(receipt.receipt_id, started)
    return web.json_response(
        {"workflow_id": started.workflow_id, "status": started.outcome.value, "new": started.new}, status=202
    )


def conflicting_duplicate(receipt_id: str, started: StartResult) -> web.Response:
    """409: the receipt's payout exists and was started by a request that differs; nothing changed."""
    fields = ", ".join(started.differing)
    return web.json_response(
        {
            "error": f"receipt {receipt_id} already has a payout, started by a request that differs in {fields}; "
            "that payout is unchanged",
            "workflow_id": started.workflow_id,
            "status": started.outcome.value,
            "fields": [
                {"field": name, "message": "differs from the request that started the payout"}
                for name in started.differing
            ],
        },
        status=409,
    )
