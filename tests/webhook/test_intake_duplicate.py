"""A receipt sent again: the same request answers `existing`; one that differs in who is paid what
answers 409 naming the fields (HTTP) or exits non-zero saying so (`payouts submit`), and the payout
keeps the request that started it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from payouts.models import payout_workflow_id
from payouts.msisdn import vault_from_settings
from payouts.status import PayoutStatus as S
from tests.cli_helpers import clean_env, payouts
from tests.stack import TEST_PHONE, Stack

OTHER_PHONE = "380009876543"  # operator code 00: nobody's number


async def test_a_resubmission_that_differs_is_409_naming_the_fields_and_changes_nothing(stack: Stack) -> None:
    body = stack.receipt()
    first = await stack.post_receipt(body)
    assert first.status_code == 202 and first.json()["status"] == "started"
    stack.started.append(first.json()["workflow_id"])

    differing = await stack.post_receipt({**body, "amount_kopecks": 2600, "msisdn": OTHER_PHONE})
    assert differing.status_code == 409
    answer = differing.json()
    assert answer["status"] == "existing_differs"
    assert answer["workflow_id"] == payout_workflow_id(body["receipt_id"])
    assert [f["field"] for f in answer["fields"]] == ["msisdn", "amount_kopecks"]
    assert "msisdn, amount_kopecks" in answer["error"]
    assert OTHER_PHONE not in differing.text and TEST_PHONE not in differing.text

    handle = stack.client.get_workflow_handle(first.json()["workflow_id"])
    view = await stack.wait_status(handle, {S.PAID})
    assert view.amount_kopecks == 2500  # the payout kept its own request
    assert len(await stack.creates()) == 1
    closed = await stack.post_receipt({**body, "telegram_id": 4343})  # after it ended, still compared
    assert closed.status_code == 409 and [f["field"] for f in closed.json()["fields"]] == ["telegram_id"]


async def test_a_resend_that_differs_only_in_time_language_or_phone_form_is_existing(stack: Stack) -> None:
    body = stack.receipt()
    first = await stack.post_receipt(body)
    assert first.status_code == 202
    stack.started.append(first.json()["workflow_id"])
    settings = stack.settings
    vault = vault_from_settings(settings.crypto.fernet_key_list(), settings.crypto.hmac_key.get_secret_value())
    as_token = {k: v for k, v in body.items() if k != "msisdn"} | {"msisdn_token": vault.encrypt(TEST_PHONE)}
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()

    for resend in (body, {**body, "accepted_at": later, "language": "en"}, as_token,
                   {**body, "msisdn": "+380 00 123-45-67"}):
        again = await stack.post_receipt(resend)
        assert again.status_code == 202, again.text
        assert (again.json()["status"], again.json()["new"]) == ("existing", False)


async def test_payouts_submit_exits_non_zero_naming_what_differs(stack: Stack, tmp_path: Path) -> None:
    args = ["submit", "--receipt-id", f"R-cli-{tmp_path.name[-8:]}", "--telegram-id", "4242",
            "--msisdn", TEST_PHONE, "--webhook-url", stack.internal_url]
    env = clean_env()

    first = await asyncio.to_thread(payouts, *args, "--amount-kopecks", "2500", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    stack.started.append(payout_workflow_id(args[2]))
    same = await asyncio.to_thread(payouts, *args, "--amount-kopecks", "2500", env=env, cwd=tmp_path)
    assert same.returncode == 0 and '"existing"' in same.stdout
    differs = await asyncio.to_thread(payouts, *args, "--amount-kopecks", "2600", env=env, cwd=tmp_path)

    assert differs.returncode == 1
    assert "amount_kopecks" in differs.stderr and payout_workflow_id(args[2]) in differs.stderr
    assert "Traceback" not in differs.stderr and TEST_PHONE not in differs.stderr
