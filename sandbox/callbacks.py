"""Delivering Portmone's status callbacks, as Portmone would: POST the `<rsp>` as application/xml,
retry a few times with back-off on a non-2xx answer or a connection error, and record every attempt.

A scheduled plan decides a bill that is still open (CREATED) at Portmone: the bill takes its verdict
whether or not the notification goes out (`drop_callback` loses only the notification). A bill that is
no longer open when the plan comes due (cancelled in the cabinet, or settled by an on-demand callback)
keeps its status, and the plan is recorded as skipped with the reason.

When the sandbox has a callback secret (`WEBHOOK_CALLBACK_HMAC_SECRETS`, the first one), every
attempt carries our signature headers (runtime.signing, docs/security.md), freshly timestamped."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from runtime.signing import signature_headers
from sandbox import rsp
from sandbox.faults import verdict_label
from sandbox.state import OPEN, SandboxState, SimBill, now_iso

logger = logging.getLogger("sandbox.callbacks")

CALLBACK_CONTENT_TYPE = "application/xml; charset=utf-8"
_MAX_BACKOFF_SECONDS = 5.0


def callback_body(bill: SimBill, status: str, error_code: str | None) -> bytes:
    """The callback document: `ok` with the bill, or for REJECTED `fail` with the error and the bill."""
    if status.upper() == "REJECTED":
        return rsp.fail(error_code or "30", lang=None, version=2, bill=bill, bill_status=status)
    return rsp.ok(bill, status)


def _record(
    state: SandboxState, bill: SimBill, status: str, error_code: str | None, kind: str, verdict: str | None = None
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": state.next_id(),
        "at": now_iso(),
        "bill_id": bill.bill_id,
        "status": status,
        "error_code": error_code,
        "kind": kind,
        # On the final callback of a plan: the verdict chosen when the bill was created.
        "verdict": verdict,
        "url": state.callback_url,
        # The bill's status at Portmone once this callback was decided (a notice never changes it back).
        "bill_status": bill.status,
        "dropped": False,
        "skipped": None,
        "delivered": False,
        "attempts": [],
    }
    state.callbacks.append(record)
    return record


async def deliver(
    state: SandboxState,
    bill: SimBill,
    status: str,
    error_code: str | None,
    *,
    kind: str,
    body: bytes | None = None,
    verdict: str | None = None,
) -> dict[str, Any]:
    """POST one callback with retries; returns its record (attempts with their HTTP status)."""
    record = _record(state, bill, status, error_code, kind, verdict)
    url = state.callback_url
    if url is None or state.session is None:
        record["error"] = "no callback_url configured"
        return record
    payload = body if body is not None else callback_body(bill, status, error_code)
    record["body_bytes"] = len(payload)
    config = state.config
    timeout = aiohttp.ClientTimeout(total=config.callback_timeout_seconds)
    for attempt in range(1, config.callback_max_attempts + 1):
        entry: dict[str, Any] = {"attempt": attempt, "at": now_iso(), "http_status": None, "error": None}
        record["attempts"].append(entry)
        headers = {"Content-Type": CALLBACK_CONTENT_TYPE}
        if config.callback_hmac_secrets:
            headers.update(signature_headers(config.callback_hmac_secrets[:1], payload))
        try:
            async with state.session.post(url, data=payload, headers=headers, timeout=timeout) as response:
                entry["http_status"] = response.status
                await response.read()
                if 200 <= response.status < 300:
                    record["delivered"] = True
                    return record
        except (aiohttp.ClientError, TimeoutError) as exc:
            entry["error"] = type(exc).__name__
        if attempt < config.callback_max_attempts:
            await asyncio.sleep(min(config.callback_retry_seconds * 2 ** (attempt - 1), _MAX_BACKOFF_SECONDS))
    logger.warning(
        "callback for bill %s not delivered after %d attempts", bill.bill_id, len(record["attempts"])
    )
    return record


def _decide(bill: SimBill, status: str) -> None:
    """Give an open bill its verdict; RETURN means it was paid, then returned."""
    if status == "RETURN":
        bill.move_to("PAYED", "verdict")
    bill.move_to(status, "verdict")


async def run_plan(
    state: SandboxState,
    bill: SimBill,
    status: str,
    error_code: str | None,
    *,
    delay: float,
    drop: bool = False,
    duplicate: bool = False,
    out_of_order: bool = False,
) -> None:
    """The fate of one created bill: after `delay` the bill takes its verdict, then the final callback
    goes out (unless dropped), then (faults) its duplicate and a stale CREATED one."""
    if delay > 0:
        await asyncio.sleep(delay)
    verdict = verdict_label(status, error_code)
    if bill.status != OPEN:
        record = _record(state, bill, status, error_code, "final", verdict)
        how = "cancelled in the cabinet" if bill.cancelled else "settled by an on-demand callback"
        record["skipped"] = f"bill is already {bill.status} ({how}); verdict {verdict} not applied, nothing sent"
        return
    _decide(bill, status)
    if drop:
        record = _record(state, bill, status, error_code, "final", verdict)
        record["dropped"] = True
        record["note"] = f"notification lost; the bill is {bill.status} at Portmone"
        return
    body = callback_body(bill, status, error_code)
    await deliver(state, bill, status, error_code, kind="final", body=body, verdict=verdict)
    if duplicate:
        await deliver(state, bill, status, error_code, kind="duplicate", body=body)
    if out_of_order:
        await deliver(state, bill, "CREATED", None, kind="stale")
