"""Delivering Portmone's status callbacks, as Portmone would: POST the `<rsp>` as application/xml,
retry a few times with back-off on a non-2xx answer or a connection error, and record every attempt.

When the sandbox has a callback secret (`WEBHOOK_CALLBACK_HMAC_SECRETS`, the first one), every
attempt carries our signature headers (payouts.signing, docs/security.md), freshly timestamped."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from payouts.signing import signature_headers
from sandbox import rsp
from sandbox.faults import verdict_label
from sandbox.state import SandboxState, SimBill, now_iso

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
        "dropped": False,
        "delivered": False,
        "attempts": [],
    }
    state.callbacks.append(record)
    return record


def record_dropped(state: SandboxState, bill: SimBill, status: str, error_code: str | None) -> None:
    record = _record(state, bill, status, error_code, "final", verdict_label(status, error_code))
    record["dropped"] = True


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


async def run_plan(
    state: SandboxState,
    bill: SimBill,
    status: str,
    error_code: str | None,
    *,
    delay: float,
    duplicate: bool,
    out_of_order: bool,
) -> None:
    """The callbacks that follow one created bill: the final one, then (faults) its duplicate and a
    stale CREATED one."""
    if delay > 0:
        await asyncio.sleep(delay)
    bill.status = status
    body = callback_body(bill, status, error_code)
    await deliver(state, bill, status, error_code, kind="final", body=body, verdict=verdict_label(status, error_code))
    if duplicate:
        await deliver(state, bill, status, error_code, kind="duplicate", body=body)
    if out_of_order:
        await deliver(state, bill, "CREATED", None, kind="stale")
