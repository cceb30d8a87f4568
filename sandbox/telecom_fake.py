"""A fake telecom top-up API: `POST /telecom/topups` with an `Idempotency-Key` header.

The same key again returns the first result (200, same topup_id, header `Idempotent-Replayed:
true`) and tops up nothing; the same key with a different body is a 409; a missing key a 400.
Every call is recorded with the phone masked. The `telecom_fail` fault answers 5xx (nothing done).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from payouts.msisdn import is_valid_msisdn, mask_msisdn
from portmone import protocol as p
from sandbox.state import STATE, SandboxState, now_iso

PATH = "/telecom/topups"
_MAX_KEY = 200


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def topups(request: web.Request) -> web.Response:
    state = request.app[STATE]
    key = request.headers.get("Idempotency-Key", "").strip()
    entry: dict[str, Any] = {"id": state.next_id(), "at": now_iso(), "idempotency_key": key or None}
    state.telecom.append(entry)
    response = await _answer(request, state, key, entry)
    entry["http_status"] = response.status
    return response


def _validate(data: object) -> tuple[str, int, str, str] | str:
    if not isinstance(data, Mapping):
        return "body must be a JSON object"
    msisdn = data.get("msisdn")
    amount = data.get("amount_kopecks")
    currency = data.get("currency")
    reference = data.get("reference")
    if not isinstance(msisdn, str) or not is_valid_msisdn(msisdn):
        return "msisdn must be 380 followed by 9 digits"
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        return "amount_kopecks must be a positive integer"
    if currency not in p.CURRENCIES:
        return f"currency must be one of {', '.join(sorted(p.CURRENCIES))}"
    if not isinstance(reference, str) or not reference.strip() or len(reference) > 200:
        return "reference must be a non-empty string of at most 200 characters"
    return msisdn, amount, currency, reference


async def _answer(request: web.Request, state: SandboxState, key: str, entry: dict[str, Any]) -> web.Response:
    if not key:
        return _error(400, "missing Idempotency-Key header")
    if len(key) > _MAX_KEY:
        return _error(400, f"Idempotency-Key longer than {_MAX_KEY} characters")
    try:
        data = json.loads(await request.text())
    except (ValueError, UnicodeDecodeError):
        return _error(400, "body is not valid JSON")
    checked = _validate(data)
    if isinstance(checked, str):
        return _error(400, checked)
    msisdn, amount, currency, reference = checked
    entry.update(
        msisdn_masked=mask_msisdn(msisdn), amount_kopecks=amount, currency=currency, reference=reference
    )
    fingerprint = (msisdn, amount, currency, reference)
    previous = state.topups.get(key)
    if previous is not None:
        if previous[0] != fingerprint:
            entry["outcome"] = "conflict"
            return _error(409, "Idempotency-Key was already used with a different request")
        entry["outcome"] = "replayed"
        entry["topup_id"] = previous[1]["topup_id"]
        return web.json_response(previous[1], headers={"Idempotent-Replayed": "true"})
    fault = state.faults.roll("telecom_fail", state.telecom_rng)
    if fault is not None:
        status = fault.value or 503
        entry["fault"] = f"telecom_fail={status}"
        entry["outcome"] = "fault"
        return _error(status, "telecom service unavailable")
    result = {
        "topup_id": f"tu_{state.next_id():08d}",
        "status": "completed",
        "msisdn_masked": mask_msisdn(msisdn),
        "amount_kopecks": amount,
        "currency": currency,
        "reference": reference,
        "created_at": now_iso(),
    }
    state.topups[key] = (fingerprint, result)
    entry["outcome"] = "topped_up"
    entry["topup_id"] = result["topup_id"]
    return web.json_response(result)


def setup(app: web.Application) -> None:
    app.router.add_post(PATH, topups)
