"""Secret hygiene: run whole payouts with a known Portmone password and a known phone number, then
look everywhere we write for either of them: the logs at DEBUG (every logger, plus whatever the
process wrote to stdout/stderr, the Temporal core included), the raw Temporal history, every row
of every ledger table, the metrics. No hit is allowed; the phone in none of its forms.

Failure messages follow the failure converter's rule: ours (a type named in payouts.failures) readable,
every other one encrypted."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from payouts.status import PayoutStatus as S
from runtime.failure_converter import ENCODED_MESSAGE, readable_types
from tests.callbacks import SETTLED
from tests.stack import TEST_PHONE, running_stack
from tests.stack_checks import dump_tables, history_failures, history_payloads, sdk_marker_bookkeeping

# A known test secret, long and unmistakable, so any trace of it is found.
PASSWORD = "hygiene-test-portmone-password-5e1f"
PHONE_FORMS = (
    TEST_PHONE,  # 380001234567
    "+" + TEST_PHONE,
    TEST_PHONE[2:],  # 0001234567, the national form
    TEST_PHONE[3:],  # 001234567, without the trunk prefix
    "+380 00 123 45 67",
    "000 123 45 67",
    "(00) 123-45-67",
    "000-123-45-67",
)


def _hits(where: str, text: str) -> list[str]:
    needles = (*PHONE_FORMS, PASSWORD)
    return [f"{where}: {needle!r}" for needle in needles if needle in text]


async def test_no_phone_or_password_in_logs_history_ledger_or_metrics(
    env: WorkflowEnvironment, tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_stack(env.client, tmp_path, read_timeout=1.0, telecom=True, portmone_password=PASSWORD) as stack:
        paid = await stack.submit(msisdn="+380 (00) 123-45-67")
        assert (await stack.wait_status(paid, SETTLED)).status == S.PAID
        await stack.faults({"callback_status": "REJECTED", "callback_error_code": "30"})
        refused = await stack.submit(msisdn=TEST_PHONE[2:], fiscal_key="FK-HYGIENE-1")
        assert (await stack.wait_status(refused, SETTLED)).status == S.MANUAL_REVIEW
        await stack.faults({"fail_codes": {"20": 1.0}})
        failed_create = await stack.submit()
        assert (await stack.wait_status(failed_create, SETTLED)).status == S.MANUAL_REVIEW

        # The phone really travelled: Portmone (the sandbox) got it as the bills' contract number.
        assert {b["contract_masked"] for b in await stack.record("bills")} == {"+380•••••67"}

        histories = {h.id: (await h.fetch_history()).to_json() for h in (paid, refused, failed_create)}
        ledger_dump = await dump_tables(stack.ledger)
        metrics = (await stack.http.get(f"{stack.internal_url}/metrics")).text
        sandbox_record = json.dumps(await stack.record("requests"))

    logs = caplog.text + "\n".join(
        f"{r.getMessage()} {r.args!r} {r.exc_text or ''} {getattr(r, '__dict__', {})!r}" for r in caplog.records
    )
    out, err = capfd.readouterr()

    # The nets were cast: there is something in each to search.
    assert paid.id in logs and len(caplog.records) > 50
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    assert "payouts" in ledger_dump and "callbacks" in ledger_dump and "exchange_archive" in ledger_dump
    assert all(len(h) > 1000 for h in histories.values())
    for wid, text in histories.items():  # with the codec on, every payload is ciphertext (search attributes aside)
        payloads = [(path, x) for path, x in history_payloads(json.loads(text)) if "searchAttributes" not in path]
        assert payloads, wid
        for path, payload in payloads:
            bookkeeping = sdk_marker_bookkeeping(path, payload)
            if bookkeeping is not None:  # the SDK's own marker data (a local activity's type and attempt)
                assert bookkeeping.get("activity_type", "ledger.").startswith("ledger."), path
                continue
            assert base64.b64decode(payload["metadata"]["encoding"]) == b"binary/encrypted", (wid, path)
    # Failure messages: ours readable (no stack trace beside them), every other application failure encrypted.
    ours = readable_types()
    readable = []
    for wid, text in histories.items():
        for path, failure in history_failures(json.loads(text)):
            info = failure.get("applicationFailureInfo")
            if info is None:
                continue  # made by the server (timeouts, the activity wrapper): the server's own words
            if info.get("type") in ours:
                assert failure["message"] != ENCODED_MESSAGE, (wid, path)
                assert "encodedAttributes" not in failure and "stackTrace" not in failure, (wid, path)
                readable.append(failure["message"])
            else:
                assert failure["message"] == ENCODED_MESSAGE and "encodedAttributes" in failure, (wid, path)
    assert any(m.startswith("Portmone refused bills.create: 20") for m in readable), readable

    hits = [
        *_hits("logs", logs),
        *_hits("stdout/stderr", out + err),
        *(hit for wid, h in histories.items() for hit in _hits(f"history {wid}", h)),
        *_hits("ledger", ledger_dump),
        *_hits("metrics", metrics),
        *_hits("sandbox record", sandbox_record),
    ]
    assert hits == []

