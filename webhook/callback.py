"""`POST /portmone/callback`: authenticate, check, store, answer fast, signal.

Authentication (webhook.callback_auth, built once at start-up) comes first: a request that fails it
gets 401/403 (webhook.refusal) and is never parsed or stored. The callback is stored before it is
acknowledged: a ledger that cannot store it answers 503 so Portmone tries again. Storing is one
ledger statement for a callback whose bill is known (ledger.callbacks.store). Once stored, telling
the workflow is our job: a signal that fails is redelivered by the sweep (webhook.redelivery); one
that succeeds is noted in the ledger with the next batch of marks (webhook.marks), after the answer.
Storage is deduplicated by a hash of (bill, verdict, status, error code); the workflow dedupes
signals too, so a repeat is harmless.

A callback for a bill id we never learnt (bills.create committed, its answer lost) is routed by what
it echoes — the receipt in the comment, the amount and the phone — when that names exactly one
payout with an attempt whose outcome is unknown (ledger.callbacks.route_by_echo).
"""

from __future__ import annotations

import hashlib
import logging
from enum import StrEnum

from aiohttp import web

from ledger import LedgerUnavailable, StoreCallbackResult
from payouts.models import receipt_in_comment
from payouts.msisdn import is_valid_msisdn
from portmone import Rsp, XmlRejected, mask_phones, parse_rsp, redact_xml
from portmone.protocol import callback_verdict
from runtime import log_context, metrics
from webhook.body import BodyRefused, read_body
from webhook.callback_latency import observe_callback_latency
from webhook.deps import WebhookDeps
from webhook.errors import error
from webhook.keys import DEPS
from webhook.marks import MARKS
from webhook.redelivery import Told, signal_stored
from webhook.refusal import Endpoint, Refused, refuse

_XML_TYPES = {"application/xml", "text/xml"}
_ACK = '<?xml version="1.0" encoding="utf-8"?>\n<rsp status="ok"/>\n'
_log = logging.getLogger("payouts.webhook.callback")


class Result(StrEnum):
    """What became of a callback request (`portmone_callbacks_total{result}`, docs/runbook.md)."""

    DELIVERED = "delivered"
    DUPLICATE = "duplicate"
    UNROUTED = "unrouted"
    ROUTED_BY_ECHO = "routed_by_echo"
    SIGNAL_FAILED = "signal_failed"
    CLOSED_PAYOUT = "closed_payout"
    STORE_FAILED = "store_failed"
    REJECTED = "rejected"
    UNAUTHORIZED = "unauthorized"


metrics.start_at_zero(metrics.CALLBACKS, metrics.every(result=Result))
V1_SOURCE = "callback"  # `portmone_v1_fallback_total{source}` of a callback
metrics.start_at_zero(metrics.V1_FALLBACKS, metrics.every(source=[V1_SOURCE]))


def dedupe_key(rsp: Rsp) -> str:
    """Same bill, same verdict: the same callback, however often and in whatever bytes it comes."""
    assert rsp.bill is not None
    parts = [rsp.bill.bill_id, "ok" if rsp.ok else "fail", rsp.bill.status.value, rsp.error.code if rsp.error else ""]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _ack(status: int = 200) -> web.Response:
    return web.Response(text=_ACK, status=status, content_type="text/xml", charset="utf-8")


def _unauthorized(refused: Refused) -> web.Response:
    metrics.record_callback(Result.UNAUTHORIZED)
    return refuse(Endpoint.CALLBACK, refused)


async def portmone_callback(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    try:
        deps.callback_auth.check_peer(request)
    except Refused as refused:
        return _unauthorized(refused)
    limit = deps.settings.webhook.max_body_bytes
    try:
        raw = await read_body(request, limit=limit, timeout=deps.settings.webhook.body_timeout_seconds)
    except BodyRefused as exc:
        metrics.record_callback(Result.REJECTED)
        return exc.response()
    try:
        deps.callback_auth.check_body(request, raw)
    except Refused as refused:
        return _unauthorized(refused)
    if request.content_type not in _XML_TYPES:
        metrics.record_callback(Result.REJECTED)
        return error(415, "send the callback as application/xml or text/xml")
    try:
        rsp = parse_rsp(raw, max_bytes=limit)
    except XmlRejected as exc:
        metrics.record_callback(Result.REJECTED)
        return error(400, f"callback rejected: {exc}")
    if rsp.bill is None or not rsp.bill.bill_id:
        metrics.record_callback(Result.REJECTED)
        return error(400, "callback names no bill (billId)")
    log_context.bind(bill_id=rsp.bill.bill_id)
    _log.debug("callback body: %s", redact_xml(raw.decode("utf-8", errors="replace")))
    if rsp.error is not None and rsp.error.fell_back_to_v1:
        metrics.record_v1_fallback(V1_SOURCE)

    code = rsp.error.code if rsp.error else None
    try:
        stored = await deps.ledger.callbacks.store(
            dedupe_key=dedupe_key(rsp),
            bill_id=rsp.bill.bill_id,
            raw_body=redact_xml(raw.decode("utf-8", errors="replace")),
            rsp_status="ok" if rsp.ok else "fail",
            bill_status=rsp.bill.status.value,
            error_code=code,
            # Free text from outside: a phone echoed in it is masked before it is stored or signalled.
            error_description=mask_phones(rsp.error.description) if rsp.error and rsp.error.description else None,
            verdict=callback_verdict(rsp.ok, rsp.bill.status, code).value,
        )
        payout_id = stored.payout_id or await _route_by_echo(deps, rsp, stored)
    except LedgerUnavailable:
        metrics.record_callback(Result.STORE_FAILED)
        _log.error("ledger unavailable: callback for bill %s not stored, asking Portmone to retry", rsp.bill.bill_id)
        return error(503, "cannot store the callback now; retry later")

    if payout_id is None:
        metrics.record_callback(Result.UNROUTED)
        _log.info("callback for unknown bill %s stored for later delivery/reconciliation", rsp.bill.bill_id)
        return _ack(202)

    log_context.bind(**log_context.ids_of_workflow(payout_id))
    told = await signal_stored(deps, payout_id, stored.callback, request.app[MARKS].add)
    observe_callback_latency(stored)
    if not told.signalled:
        # Stored: the sweep tells the workflow once Temporal answers again.
        metrics.record_callback(Result(told.result))
        return _ack(202)
    if told is Told.CLOSED:
        metrics.record_callback(Result.CLOSED_PAYOUT)
        return _ack()
    metrics.record_callback(Result.DUPLICATE if not stored.inserted else Result.DELIVERED)
    return _ack()


async def _route_by_echo(deps: WebhookDeps, rsp: Rsp, stored: StoreCallbackResult) -> str | None:
    """The payout a callback for an unknown bill belongs to, by its echo (None: a person reconciles)."""
    bill = rsp.bill
    assert bill is not None
    receipt_id = receipt_in_comment(bill.comment)
    if receipt_id is None or bill.contract_number is None or not is_valid_msisdn(bill.contract_number):
        return None
    payout_id = await deps.ledger.callbacks.route_by_echo(
        stored.callback.id,
        receipt_id=receipt_id,
        amount_kopecks=bill.amount_kopecks,
        user_key=deps.vault.digest(bill.contract_number),
    )
    if payout_id is not None:
        metrics.record_callback(Result.ROUTED_BY_ECHO)
        _log.warning(
            "callback for bill %s routed to %s by its echo (the bill id was never recorded)", bill.bill_id, payout_id
        )
    return payout_id
