"""`portmone.create_bill` as Temporal runs it (ActivityEnvironment), against a real SQLite ledger: input
is checked before anything is written, and the new-bill rule's refusal reaches the workflow typed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.bill import BillActivities
from activities.payee import PayeeResolver
from ledger import Ledger
from payouts import failures
from payouts.models import CreateBillInput
from payouts.msisdn import vault_from_settings
from portmone import PortmoneClient
from runtime import devdefaults
from tests.ledger.helpers import reserved
from tests.stack import TEST_PHONE


@pytest.fixture
async def bills(ledger: Ledger) -> AsyncIterator[BillActivities]:
    # Nothing listens on port 9: a request that got through would fail as not sent, never hang.
    client = PortmoneClient(api_base="http://127.0.0.1:9/api/directcash/", login="l", password="p")
    vault = vault_from_settings([devdefaults.DEV_FERNET_KEY], devdefaults.DEV_HMAC_KEY)
    yield BillActivities(client, ledger, vault, PayeeResolver(devdefaults.DEV_PAYEE_ID, {}))
    await client.aclose()


def bill_input(bills: BillActivities, payout_id: str, **overrides: object) -> CreateBillInput:
    values: dict[str, object] = {
        "payout_id": payout_id, "receipt_id": payout_id.removeprefix("payout-"), "telegram_id": 1,
        "msisdn_token": bills._vault.encrypt(TEST_PHONE), "amount_kopecks": 2500, "currency": "UAH",
        "payee_id": None, "round_no": 1,
    }
    values.update(overrides)
    return CreateBillInput.model_validate(values)


async def test_bad_input_is_refused_before_an_attempt_is_written(ledger: Ledger, bills: BillActivities) -> None:
    pid = await reserved(ledger)

    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(bills.create_bill, bill_input(bills, pid, currency="USD"))

    assert refused.value.type == failures.BAD_PAYOUT_DATA and refused.value.non_retryable
    assert "currency" in refused.value.message
    assert await ledger.attempts.for_payout(pid) == []  # no `prepared` row that would never end


async def test_the_new_bill_rule_refusal_names_the_attempts(ledger: Ledger, bills: BillActivities) -> None:
    pid = await reserved(ledger)
    earlier = await ledger.attempts.begin(pid, 1)  # an attempt of round 1 with no recorded ending

    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(bills.create_bill, bill_input(bills, pid, round_no=2))

    assert refused.value.type == failures.BILL_MAY_BE_LIVE and refused.value.non_retryable
    assert list(refused.value.details) == [[earlier.id]]
    assert [a.attempt_no for a in await ledger.attempts.for_payout(pid)] == [1]
