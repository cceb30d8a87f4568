"""POST /api/directcash/: the simulated PortmoneDirect endpoint (DESIGN.md §4, portmone/protocol.py).

Checks, in order: form-encoded body (else fail 12), login/password (10), version (1 or 2, missing =
1; else 11), method (12); then for `bills.create`: payeeId (13), contractNumber (20), amount (21,
and 23 over the payee limit), currency (22). Version 2 failures carry `<error_description>`,
version 1 failures do not. `lang` (uk/ru/en, uk by default) picks the language of the texts.
A form-encoded body is parsed (and its redacted parameters recorded) before any fault is applied, so
every recorded request can be attributed to its receipt. Faults (sandbox.faults) are applied along
the way and recorded with the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from payouts.money import MoneyError, parse_amount
from payouts.msisdn import is_valid_msisdn
from portmone import protocol as p
from portmone.redact import redact_params
from sandbox import callbacks, rsp
from sandbox.faults import verdict_label
from sandbox.state import STATE, SandboxState, SimBill, now_iso

logger = logging.getLogger("sandbox.portmone")

PATH = "/api/directcash/"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def _kyiv_today() -> str:
    try:
        zone: Any = ZoneInfo("Europe/Kyiv")
    except ZoneInfoNotFoundError:
        zone = UTC
    return datetime.now(zone).strftime(p.DATE_FORMAT)


def _xml(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=rsp.CONTENT_TYPE, charset=rsp.CHARSET)


class _Call:
    """One request being answered: its record and the language/version to answer in."""

    def __init__(self, state: SandboxState, record: dict[str, Any]) -> None:
        self.state = state
        self.record = record
        self.lang: str | None = None
        self.version = 1

    def fail(self, code: str) -> web.Response:
        version = self.version
        if version >= 2 and self.state.faults.roll("version1_fallback", self.state.rng):
            self.record["faults"].append("version1_fallback")
            version = 1
        self.record["outcome"] = f"fail:{code}"
        self.record["http_status"] = 200
        return _xml(rsp.fail(code, lang=self.lang, version=version))


async def directcash(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    record: dict[str, Any] = {
        "id": state.next_id(),
        "at": now_iso(),
        "content_type": request.content_type,
        "method": None,
        "params": {},
        "faults": [],
        "outcome": None,
        "http_status": None,
        "bill_id": None,
        # For a created bill whose callbacks are planned: its verdict (`PAYED`, `RETURN`, `REJECTED:4`).
        "verdict": None,
    }
    state.requests.append(record)
    call = _Call(state, record)

    # The parameters are recorded first, so that even a request a fault answers can be attributed.
    params: dict[str, str] | None = None
    if request.content_type == FORM_CONTENT_TYPE:
        try:
            form = await request.post()
        except web.HTTPException as exc:  # over-size body: 413
            record["outcome"] = f"http_{exc.status}"
            record["http_status"] = exc.status
            raise
        params = {key: value for key, value in form.items() if isinstance(value, str)}
        record["params"] = redact_params(params)
        record["method"] = params.get(p.P_METHOD)

    latency = state.faults.roll("latency_ms", state.rng)
    if latency is not None and latency.value:
        record["faults"].append(f"latency_ms={latency.value}")
        await asyncio.sleep(latency.value / 1000)

    server_error = state.faults.roll("http_5xx", state.rng)
    if server_error is not None:
        status = server_error.value or 500
        record["faults"].append(f"http_5xx={status}")
        record["outcome"] = f"http_{status}"
        record["http_status"] = status
        return web.Response(
            status=status,
            text=f"<html><body><h1>{status} Server Error</h1></body></html>",
            content_type="text/html",
        )

    if params is None:
        return call.fail("12")
    lang = params.get(p.P_LANG, "").strip().lower()
    call.lang = lang if lang in p.LANGUAGES else None
    raw_version = params.get(p.P_VERSION, "").strip() or "1"
    call.version = int(raw_version) if raw_version in ("1", "2") else 1

    login_ok = hmac.compare_digest(params.get(p.P_LOGIN, "").encode(), state.config.login.encode())
    password_ok = hmac.compare_digest(params.get(p.P_PASSWORD, "").encode(), state.config.password.encode())
    if not (login_ok and password_ok):
        return call.fail("10")
    if raw_version not in ("1", "2"):
        return call.fail("11")
    if params.get(p.P_METHOD) != p.METHOD_BILLS_CREATE:
        return call.fail("12")
    return await _bills_create(request, call, params)


async def _bills_create(request: web.Request, call: _Call, params: dict[str, str]) -> web.StreamResponse:
    state = call.state
    payee_id = params.get(p.P_PAYEE_ID, "").strip()
    if payee_id not in state.config.payee_ids:
        return call.fail("13")
    contract = params.get(p.P_CONTRACT_NUMBER, "").strip()
    if not is_valid_msisdn(contract):
        return call.fail("20")
    try:
        amount = parse_amount(params.get(p.P_AMOUNT, ""))
    except MoneyError:
        return call.fail("21")
    if amount <= 0:
        return call.fail("21")
    if amount > state.config.max_amount_kopecks:
        return call.fail("23")
    currency = params.get(p.P_CURRENCY, "").strip()
    if currency not in p.CURRENCIES:
        return call.fail("22")
    code = state.faults.roll_fail_code(state.rng)
    if code is not None:
        call.record["faults"].append(f"fail_code={code}")
        return call.fail(code)

    bill = SimBill(
        bill_id=state.new_bill_id(),
        payee_id=payee_id,
        contract_number=contract,
        amount_kopecks=amount,
        currency=currency,
        comment=params.get(p.P_COMMENT, ""),
        date=_kyiv_today(),
    )
    state.bills[bill.bill_id] = bill
    call.record["bill_id"] = bill.bill_id
    await _schedule_callbacks(state, call.record, bill)

    if state.faults.roll("commit_then_hang", state.rng) is not None:
        call.record["faults"].append("commit_then_hang")
        call.record["outcome"] = "hang"
        await _hang(request, state)
        return web.Response(status=503, text="released")

    call.record["outcome"] = "ok"
    call.record["http_status"] = 200
    return _xml(rsp.ok(bill, "CREATED"))


async def _schedule_callbacks(state: SandboxState, record: dict[str, Any], bill: SimBill) -> None:
    if state.callback_url is None:
        return
    status, error_code = state.faults.choose_verdict(state.rng)
    bill.verdict = record["verdict"] = verdict_label(status, error_code)
    if state.faults.roll("drop_callback", state.rng) is not None:
        # Portmone still decides the bill; only the notification is lost.
        record["faults"].append("drop_callback")
        state.spawn(callbacks.run_plan(state, bill, status, error_code, delay=state.callback_delay_seconds, drop=True))
        return
    duplicate = state.faults.roll("duplicate_callback", state.rng) is not None
    out_of_order = state.faults.roll("out_of_order", state.rng) is not None
    before_answer = state.faults.roll("callback_before_answer", state.rng) is not None
    for name, applied in (
        ("duplicate_callback", duplicate),
        ("out_of_order", out_of_order),
        ("callback_before_answer", before_answer),
    ):
        if applied:
            record["faults"].append(name)
    plan = callbacks.run_plan(
        state,
        bill,
        status,
        error_code,
        delay=0.0 if before_answer else state.callback_delay_seconds,
        duplicate=duplicate,
        out_of_order=out_of_order,
    )
    task = state.spawn(plan)
    if before_answer:
        # The callback reaches the merchant before the answer to bills.create does.
        await asyncio.shield(task)


async def _hang(request: web.Request, state: SandboxState) -> None:
    """Hold the request without answering until the client gives up; reset and shutdown end it."""
    release = state.release
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(release.wait(), timeout=state.config.hang_seconds)
    if request.transport is not None:
        request.transport.close()


def setup(app: web.Application) -> None:
    app.router.add_post(PATH, directcash)
