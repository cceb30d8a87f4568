"""`POST /portmone/callback`: authenticate, check, store, answer fast, signal.

Authentication (webhook.auth_callback) comes first: a request that fails it gets 401/403 and is
never parsed or stored. The callback is stored before it is acknowledged: a ledger that cannot
store it answers 503 so Portmone tries again. Storage is deduplicated by a hash of (bill, verdict,
status, error code); the workflow dedupes signals too, so a repeat (or a replay) is harmless.
"""

from __future__ import annotations

import hashlib
import logging

from aiohttp import web
from prometheus_client import Counter
from temporalio.service import RPCError, RPCStatusCode

from ledger import LedgerUnavailable
from payouts.models import CallbackSignal
from portmone import Rsp, XmlRejected, mask_phones, parse_rsp, redact_xml
from webhook.auth_callback import check_callback_signature, check_peer
from webhook.auth_failures import Endpoint, Refusal, refuse
from webhook.body import BodyRefused, read_body
from webhook.errors import error
from webhook.keys import DEPS

CALLBACKS = Counter("portmone_callbacks_total", "Portmone callbacks by result", ["result"])
V1_FALLBACKS = Counter("portmone_v1_fallback_total", "Portmone answers that fell back to protocol version 1")
_XML_TYPES = {"application/xml", "text/xml"}
_ACK = '<?xml version="1.0" encoding="utf-8"?>\n<rsp status="ok"/>\n'
_log = logging.getLogger("payouts.webhook.callback")


def dedupe_key(rsp: Rsp) -> str:
    """Same bill, same verdict: the same callback, however often and in whatever bytes it comes."""
    assert rsp.bill is not None
    parts = [rsp.bill.bill_id, "ok" if rsp.ok else "fail", rsp.bill.status.value, rsp.error.code if rsp.error else ""]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _ack(status: int = 200) -> web.Response:
    return web.Response(text=_ACK, status=status, content_type="text/xml", charset="utf-8")


def _unauthorized(refusal: Refusal) -> web.Response:
    CALLBACKS.labels(result="unauthorized").inc()
    return refuse(Endpoint.CALLBACK, refusal)


async def portmone_callback(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    refusal = check_peer(request, deps.settings)
    if refusal is not None:
        return _unauthorized(refusal)
    limit = deps.settings.webhook.max_body_bytes
    try:
        raw = await read_body(request, limit=limit, timeout=deps.settings.webhook.body_timeout_seconds)
    except BodyRefused as exc:
        CALLBACKS.labels(result="rejected").inc()
        return exc.response()
    refusal = check_callback_signature(request, raw, deps.settings)
    if refusal is not None:
        return _unauthorized(refusal)
    if request.content_type not in _XML_TYPES:
        CALLBACKS.labels(result="rejected").inc()
        return error(415, "send the callback as application/xml or text/xml")
    try:
        rsp = parse_rsp(raw, max_bytes=limit)
    except XmlRejected as exc:
        CALLBACKS.labels(result="rejected").inc()
        return error(400, f"callback rejected: {exc}")
    if rsp.bill is None or not rsp.bill.bill_id:
        CALLBACKS.labels(result="rejected").inc()
        return error(400, "callback names no bill (billId)")
    if rsp.error is not None and rsp.error.fell_back_to_v1:
        V1_FALLBACKS.inc()

    try:
        stored = await deps.ledger.store_callback(
            dedupe_key=dedupe_key(rsp),
            bill_id=rsp.bill.bill_id,
            raw_body=redact_xml(raw.decode("utf-8", errors="replace")),
            rsp_status="ok" if rsp.ok else "fail",
            bill_status=rsp.bill.status.value,
            error_code=rsp.error.code if rsp.error else None,
            # Free text from outside: a phone echoed in it is masked before it is stored or signalled.
            error_description=mask_phones(rsp.error.description) if rsp.error and rsp.error.description else None,
        )
    except LedgerUnavailable:
        CALLBACKS.labels(result="store_failed").inc()
        _log.error("ledger unavailable: callback for bill %s not stored, asking Portmone to retry", rsp.bill.bill_id)
        return error(503, "cannot store the callback now; retry later")

    if stored.payout_id is None:
        CALLBACKS.labels(result="unrouted").inc()
        _log.info("callback for unknown bill %s stored for later delivery/reconciliation", rsp.bill.bill_id)
        return _ack(202)

    handle = deps.temporal.get_workflow_handle(stored.payout_id)
    try:
        await handle.signal("portmone_callback", CallbackSignal.from_stored(stored.callback))
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            # The payout already ended; the stored callback is there for reconciliation.
            CALLBACKS.labels(result="closed_payout").inc()
            return _ack()
        CALLBACKS.labels(result="signal_failed").inc()
        _log.error("callback for %s stored but not signalled: %s", stored.payout_id, exc.status)
        return error(503, "stored, but the payout could not be told; retry later")
    CALLBACKS.labels(result="duplicate" if not stored.inserted else "delivered").inc()
    return _ack()
