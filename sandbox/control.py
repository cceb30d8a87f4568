"""`/_sandbox/`: the sandbox's records and controls (for tests, `payouts dev` and people).

GET  /_sandbox/health                      {"status": "ok", "seed": int, ...counts}
GET  /_sandbox/requests                    {"requests": [...]}  every Portmone request, redacted
GET  /_sandbox/bills[?comment=<text>]      {"bills": [...]}     phones masked; comment: exact match
GET  /_sandbox/callbacks                   {"callbacks": [...]} each callback with its attempts
GET  /_sandbox/telegram                    {"telegram": [...]}
GET  /_sandbox/telecom                     {"telecom": [...]}
GET  /_sandbox/faults                      the fault table (format: sandbox.faults)
POST /_sandbox/faults[?mode=replace]       merge (default) or replace; 400 and unchanged on bad input
POST /_sandbox/reset                       forget records, bills and faults; restart the random
                                           streams from the seed ({"seed": int} body: a new seed)
GET/POST /_sandbox/settings                {"callback_url": str|null, "callback_delay_seconds": number}
POST /_sandbox/bills/{bill_id}/callback    {"status": "PAYED|REJECTED|CREATED|RETURN", "error_code"?: str}
                                           409 when the bill cannot take that status (sandbox.state)
POST /_sandbox/bills/{bill_id}/cancel      an operator cancels an open (CREATED) bill in Portmone's
                                           cabinet: REJECTED, no callback; 409 when not open
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from portmone.protocol import BillStatus
from portmone.redact import mask_phones
from sandbox import callbacks
from sandbox.faults import FaultError, FaultTable
from sandbox.state import OPEN, STATE, TRANSITIONS, SandboxState, SimBill, transition_error

PREFIX = "/_sandbox"
_CALLBACK_STATUSES = frozenset(s.value for s in BillStatus if s is not BillStatus.UNKNOWN)


def _bad(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _json_body(request: web.Request) -> Any:
    """The parsed JSON body; raises HTTPBadRequest with a clear message."""
    try:
        text = await request.text()
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "body is not UTF-8"}), content_type="application/json"
        ) from None
    if not text.strip():
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"body is not valid JSON: {exc.msg} (position {exc.pos})"}),
            content_type="application/json",
        ) from None


def _state(request: web.Request) -> SandboxState:
    return request.app[STATE]


async def health(request: web.Request) -> web.Response:
    state = _state(request)
    return web.json_response(
        {
            "status": "ok",
            "seed": state.seed,
            "bills": len(state.bills),
            "requests": len(state.requests),
            "pending_tasks": len(state.tasks),
            "callback_url": state.callback_url,
        }
    )


async def requests_(request: web.Request) -> web.Response:
    return web.json_response({"requests": list(_state(request).requests)})


async def bills(request: web.Request) -> web.Response:
    unknown = sorted(set(request.query) - {"comment"})
    if unknown:
        return _bad(f"unknown query parameter(s) {', '.join(unknown)}; known: comment")
    comment = request.query.get("comment")
    found = [b.to_json() for b in _state(request).bills.values() if comment is None or b.comment == comment]
    return web.json_response({"bills": found})


async def callbacks_(request: web.Request) -> web.Response:
    return web.json_response({"callbacks": list(_state(request).callbacks)})


async def telegram(request: web.Request) -> web.Response:
    return web.json_response({"telegram": list(_state(request).telegram)})


async def telecom(request: web.Request) -> web.Response:
    return web.json_response({"telecom": list(_state(request).telecom)})


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(_state(request).faults.to_json())


async def post_faults(request: web.Request) -> web.Response:
    state = _state(request)
    mode = request.query.get("mode", "merge")
    if mode not in ("merge", "replace"):
        return _bad("mode must be 'merge' or 'replace'")
    spec = await _json_body(request)
    try:
        base = FaultTable() if mode == "replace" else state.faults
        state.faults = base.merged(spec)
    except FaultError as exc:
        return _bad(str(exc))
    return web.json_response(state.faults.to_json())


async def reset(request: web.Request) -> web.Response:
    state = _state(request)
    spec = await _json_body(request)
    if not isinstance(spec, dict) or set(spec) - {"seed"}:
        return _bad('reset takes no body or {"seed": <non-negative integer>}')
    seed = spec.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        return _bad("seed must be a non-negative integer")
    await state.reset(seed)
    return web.json_response({"status": "reset", "seed": state.seed})


def _settings_json(state: SandboxState) -> dict[str, Any]:
    return {"callback_url": state.callback_url, "callback_delay_seconds": state.callback_delay_seconds}


async def get_settings(request: web.Request) -> web.Response:
    return web.json_response(_settings_json(_state(request)))


async def post_settings(request: web.Request) -> web.Response:
    state = _state(request)
    spec = await _json_body(request)
    if not isinstance(spec, dict):
        return _bad("settings must be a JSON object")
    unknown = sorted(set(spec) - {"callback_url", "callback_delay_seconds"})
    if unknown:
        return _bad(f"unknown setting(s) {', '.join(unknown)}; known: callback_url, callback_delay_seconds")
    url = spec.get("callback_url", state.callback_url)
    if url is not None:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            return _bad("callback_url must be an http(s) URL or null")
    delay = spec.get("callback_delay_seconds", state.callback_delay_seconds)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay) or delay < 0:
        return _bad("callback_delay_seconds must be a non-negative number")
    state.callback_url = url
    state.callback_delay_seconds = float(delay)
    return web.json_response(_settings_json(state))


async def send_callback(request: web.Request) -> web.Response:
    state = _state(request)
    bill = state.bills.get(request.match_info["bill_id"])
    if bill is None:
        return _bad("unknown bill", status=404)
    spec = await _json_body(request)
    if not isinstance(spec, dict):
        return _bad("body must be a JSON object")
    unknown = sorted(set(spec) - {"status", "error_code"})
    if unknown:
        return _bad(f"unknown field(s) {', '.join(unknown)}; known: status, error_code")
    status = spec.get("status")
    if not isinstance(status, str) or status.upper() not in _CALLBACK_STATUSES:
        return _bad(f"status must be one of {', '.join(sorted(_CALLBACK_STATUSES))}")
    status = status.upper()
    error_code = spec.get("error_code")
    if error_code is not None and (not isinstance(error_code, str) or not 0 < len(error_code) <= 16):
        return _bad("error_code must be a short string")
    if status == "REJECTED" and error_code is None:
        error_code = "30"
    if status != "REJECTED" and error_code is not None:
        return _bad("error_code goes with status REJECTED only")
    if state.callback_url is None:
        return _bad("no callback_url configured (POST /_sandbox/settings)", status=409)
    refused = transition_error(bill, status)
    if refused is not None:
        return _conflict(refused, bill)
    if (bill.status, status) in TRANSITIONS:  # else a repeat or a stale CREATED notice: no change
        bill.move_to(status, "on_demand_callback")
    record = await state.spawn(callbacks.deliver(state, bill, status, error_code, kind="on_demand"))
    return web.json_response(record)


def _conflict(message: str, bill: SimBill) -> web.Response:
    return web.json_response({"error": message, "bill": bill.to_json()}, status=409)


async def cancel_bill(request: web.Request) -> web.Response:
    """An operator cancels a still-open bill in Portmone's cabinet: it becomes REJECTED, silently."""
    state = _state(request)
    bill = state.bills.get(request.match_info["bill_id"])
    if bill is None:
        return _bad("unknown bill", status=404)
    spec = await _json_body(request)
    if not isinstance(spec, dict) or set(spec) - {"reason"} or not isinstance(spec.get("reason", ""), str):
        return _bad('cancel takes no body or {"reason": <text>}')
    if bill.status != OPEN:
        how = " (cancelled in the cabinet)" if bill.cancelled else ""
        return _conflict(
            f"bill {bill.bill_id} is {bill.status}{how}: only an open (CREATED) bill can be cancelled", bill
        )
    bill.cancelled = True
    bill.move_to("REJECTED", "cancelled")
    reason = mask_phones(str(spec.get("reason", ""))[:200])
    if reason:
        bill.history[-1]["reason"] = reason
    return web.json_response({"status": "cancelled", "bill": bill.to_json()})


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get(PREFIX + "/health", health)
    r.add_get(PREFIX + "/requests", requests_)
    r.add_get(PREFIX + "/bills", bills)
    r.add_get(PREFIX + "/callbacks", callbacks_)
    r.add_get(PREFIX + "/telegram", telegram)
    r.add_get(PREFIX + "/telecom", telecom)
    r.add_get(PREFIX + "/faults", get_faults)
    r.add_post(PREFIX + "/faults", post_faults)
    r.add_post(PREFIX + "/reset", reset)
    r.add_get(PREFIX + "/settings", get_settings)
    r.add_post(PREFIX + "/settings", post_settings)
    r.add_post(PREFIX + "/bills/{bill_id}/callback", send_callback)
    r.add_post(PREFIX + "/bills/{bill_id}/cancel", cancel_bill)
