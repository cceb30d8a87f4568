"""`portmone.create_bill` for each of Portmone's four outcomes, and for a ledger that cannot record the
attempt, with a stub client standing in for Portmone and a real SQLite ledger: what the activity
answers the workflow, what the attempt log holds afterwards, and when nothing is sent."""

from __future__ import annotations

from typing import cast

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.bill import BillActivities
from activities.payee import PayeeResolver
from ledger import Ledger
from payouts import failures
from payouts.models import CreateBillInput
from payouts.msisdn import vault_from_settings
from payouts.status import PayoutStatus
from portmone import AnsweredFail, AnsweredOk, BillRequest, NotSent, Outcome, OutcomeUnknown, PortmoneClient
from portmone.protocol import BillStatus, ErrorKind
from portmone.results import Bill, Exchange, PortmoneError
from runtime import devdefaults
from tests.faults import FaultyLedger, LedgerFaults
from tests.ledger.helpers import reserved
from tests.stack import TEST_PHONE

EXCHANGE = Exchange(method="bills.create", request={}, http_status=200, response_body="<rsp/>", elapsed_ms=5)


class StubPortmone:
    """Answers each send with the next scripted outcome and counts the sends (builds requests for real)."""

    bill_request = staticmethod(PortmoneClient.bill_request)

    def __init__(self, *outcomes: Outcome) -> None:
        self.outcomes = list(outcomes)
        self.sent: list[BillRequest] = []

    async def send(self, request: BillRequest) -> Outcome:
        self.sent.append(request)
        return self.outcomes.pop(0)


def answered_ok(bill_id: str) -> AnsweredOk:
    bill = Bill(bill_id=bill_id, status=BillStatus.CREATED, raw_status="CREATED", contract_number=None,
                amount_kopecks=2500, currency="UAH", comment=None, payee_id=None)  # fmt: skip
    return AnsweredOk(bill=bill, exchange=EXCHANGE)


def answered_fail(code: str, kind: ErrorKind) -> AnsweredFail:
    error = PortmoneError(code=code, message="refused", description="refused for the test", kind=kind,
                          fell_back_to_v1=False)  # fmt: skip
    return AnsweredFail(error=error, bill=None, exchange=EXCHANGE)


def activities(ledger: Ledger, portmone: StubPortmone) -> BillActivities:
    vault = vault_from_settings([devdefaults.DEV_FERNET_KEY], devdefaults.DEV_HMAC_KEY)
    return BillActivities(cast(PortmoneClient, portmone), ledger, vault, PayeeResolver(devdefaults.DEV_PAYEE_ID, {}))


def bill_input(bills: BillActivities, payout_id: str) -> CreateBillInput:
    return CreateBillInput(
        payout_id=payout_id, receipt_id=payout_id.removeprefix("payout-"), telegram_id=1,
        msisdn_token=bills._vault.encrypt(TEST_PHONE), amount_kopecks=2500, currency="UAH", payee_id=None,
        round_no=1,
    )  # fmt: skip


async def run(bills: BillActivities, inp: CreateBillInput) -> object:
    return await ActivityEnvironment().run(bills.create_bill, inp)


async def test_an_answered_bill_is_recorded_and_the_payout_awaits_its_callback(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    bills = activities(ledger, StubPortmone(answered_ok("B-1")))

    created = await run(bills, bill_input(bills, pid))

    assert getattr(created, "bill_id", None) == "B-1"
    [attempt] = await ledger.attempts.for_payout(pid)
    assert (attempt.state, attempt.bill_id) == ("answered", "B-1")
    payout = await ledger.payouts.get(pid)
    assert payout is not None and payout.status == PayoutStatus.AWAITING_CALLBACK and payout.bill_id == "B-1"


@pytest.mark.parametrize(
    ("kind", "failure", "retried"),
    [(ErrorKind.TRANSIENT, failures.TRANSIENT, True), (ErrorKind.PERMANENT, failures.PERMANENT, False)],
)
async def test_a_refusal_is_typed_by_its_kind(ledger: Ledger, kind: ErrorKind, failure: str, retried: bool) -> None:
    pid = await reserved(ledger)
    bills = activities(ledger, StubPortmone(answered_fail("24", kind)))

    with pytest.raises(ApplicationError) as refused:
        await run(bills, bill_input(bills, pid))

    assert refused.value.type == failure and refused.value.non_retryable is not retried
    assert list(refused.value.details) == ["24"]
    [attempt] = await ledger.attempts.for_payout(pid)
    assert (attempt.state, attempt.error_code, attempt.bill_id) == ("answered", "24", None)


async def test_a_request_that_never_left_may_be_sent_again(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    bills = activities(ledger, StubPortmone(NotSent(reason="connect refused", exchange=EXCHANGE), answered_ok("B-2")))

    with pytest.raises(ApplicationError) as not_sent:
        await run(bills, bill_input(bills, pid))
    assert not_sent.value.type == failures.NOT_SENT and not not_sent.value.non_retryable
    created = await run(bills, bill_input(bills, pid))  # Temporal's retry of the same round

    assert getattr(created, "bill_id", None) == "B-2"
    assert [a.state for a in await ledger.attempts.for_payout(pid)] == ["not_sent", "answered"]


async def test_an_unknown_outcome_is_never_sent_again(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    portmone = StubPortmone(OutcomeUnknown(reason="read timeout", exchange=EXCHANGE), answered_ok("B-3"))
    bills = activities(ledger, portmone)

    for _ in range(2):  # the first answer, then a retry that finds the doubt in the attempt log
        with pytest.raises(ApplicationError) as unknown:
            await run(bills, bill_input(bills, pid))
        assert unknown.value.type == failures.OUTCOME_UNKNOWN and unknown.value.non_retryable

    assert len(portmone.sent) == 1
    assert [a.state for a in await ledger.attempts.for_payout(pid)] == ["unknown"]


async def test_a_ledger_that_cannot_record_the_attempt_means_nothing_is_sent(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    faults = LedgerFaults()
    portmone = StubPortmone(answered_ok("B-4"))
    bills = activities(cast(Ledger, FaultyLedger(ledger, faults)), portmone)
    faults.method("attempts.start").arm()

    with pytest.raises(ApplicationError) as not_recorded:
        await run(bills, bill_input(bills, pid))

    assert not_recorded.value.type == failures.ATTEMPT_NOT_RECORDED and not_recorded.value.non_retryable
    assert type(not_recorded.value.__cause__).__name__ == "LedgerUnavailable"
    assert portmone.sent == [] and await ledger.attempts.for_payout(pid) == []
