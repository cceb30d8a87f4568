"""`create_bill`: the one place a Portmone bill is requested, behind a write-ahead attempt log.

Before each send an attempt is written (`prepared`); after it, `answered`, `not_sent` or
`unknown`. A retry that finds an attempt of its round with a bill adopts that bill; one that finds
an attempt without an ending (the worker died mid-call) or with an unknown outcome never re-sends:
the payout goes to manual review with the evidence.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.payee import PayeeResolver, PayeeUnknown
from ledger import AttemptRecord, Ledger
from payouts import failures
from payouts.models import CallbackSignal, CreateBillInput, CreateBillOutput
from payouts.msisdn import MsisdnError, MsisdnVault
from portmone import (
    AnsweredFail,
    AnsweredOk,
    ErrorKind,
    NotSent,
    Outcome,
    PortmoneClient,
    mask_phones,
)
from portmone.protocol import METHOD_BILLS_CREATE

COMMENT_TEMPLATE = "DarnitsaCashBot receipt {receipt_id}"


class BillActivities:
    def __init__(self, client: PortmoneClient, ledger: Ledger, vault: MsisdnVault, payees: PayeeResolver) -> None:
        self._client = client
        self._ledger = ledger
        self._vault = vault
        self._payees = payees

    @activity.defn(name="portmone.create_bill")
    async def create_bill(self, inp: CreateBillInput) -> CreateBillOutput:
        earlier = await self._ledger.attempts(inp.payout_id, round_no=inp.round_no)
        adopted = await self._adopt_or_refuse(inp, earlier)
        if adopted is not None:
            return adopted

        try:
            msisdn = self._vault.decrypt(inp.msisdn_token)
            payee = self._payees.resolve(inp.payee_id, msisdn)
        except (MsisdnError, PayeeUnknown) as exc:
            raise ApplicationError(str(exc), type=failures.BAD_PAYOUT_DATA, non_retryable=True) from None

        attempt = await self._ledger.begin_attempt(inp.payout_id, inp.round_no)
        outcome = await self._client.create_bill(
            payee_id=payee,
            contract_number=msisdn,
            amount_kopecks=inp.amount_kopecks,
            currency=inp.currency,
            comment=COMMENT_TEMPLATE.format(receipt_id=inp.receipt_id),
        )
        del msisdn
        return await self._settle(inp, attempt, outcome)

    async def _adopt_or_refuse(self, inp: CreateBillInput, earlier: list[AttemptRecord]) -> CreateBillOutput | None:
        for attempt in earlier:
            if attempt.bill_id:
                activity.logger.info("adopting bill of attempt %s for %s", attempt.attempt_no, inp.payout_id)
                return await self._route(inp, attempt.bill_id, adopted=True)
        for attempt in earlier:
            if attempt.state == "prepared":
                await self._ledger.finish_attempt(
                    attempt.id, "unknown", detail="no recorded ending: the worker stopped during the call"
                )
                raise self._unknown(inp, attempt.attempt_no, "an earlier attempt has no recorded ending")
            if attempt.state == "unknown":
                why = attempt.detail or "an earlier attempt's outcome is unknown"
                raise self._unknown(inp, attempt.attempt_no, why)
        return None

    async def _settle(self, inp: CreateBillInput, attempt: AttemptRecord, outcome: Outcome) -> CreateBillOutput:
        if isinstance(outcome, AnsweredOk):
            await self._ledger.finish_attempt(attempt.id, "answered", bill_id=outcome.bill.bill_id)
            await self._archive(inp, outcome, "answered_ok", outcome.bill.bill_id)
            return await self._route(inp, outcome.bill.bill_id, adopted=False)
        if isinstance(outcome, AnsweredFail):
            err = outcome.error
            # Portmone's texts may echo the contract number: masked before the ledger or history sees them.
            text = mask_phones(err.description or err.message)
            await self._ledger.finish_attempt(
                attempt.id, "answered", error_code=err.code, detail=mask_phones(err.message)[:500]
            )
            await self._archive(inp, outcome, "answered_fail", None)
            if err.fell_back_to_v1:
                activity.logger.warning("portmone answered in protocol version 1 (no error_description)")
            message = f"Portmone refused bills.create: {err.code} {text}"
            if err.kind == ErrorKind.TRANSIENT:
                raise ApplicationError(message, err.code, type=failures.TRANSIENT)
            raise ApplicationError(message, err.code, type=failures.PERMANENT, non_retryable=True)
        if isinstance(outcome, NotSent):
            await self._ledger.finish_attempt(attempt.id, "not_sent", detail=outcome.reason[:500])
            await self._archive(inp, outcome, "not_sent", None)
            raise ApplicationError(f"bills.create not sent: {outcome.reason}", type=failures.NOT_SENT)
        await self._ledger.finish_attempt(attempt.id, "unknown", detail=outcome.reason[:500])
        await self._archive(inp, outcome, "outcome_unknown", None)
        raise self._unknown(inp, attempt.attempt_no, outcome.reason)

    async def _route(self, inp: CreateBillInput, bill_id: str, *, adopted: bool) -> CreateBillOutput:
        early = await self._ledger.set_bill_id(inp.payout_id, bill_id)
        return CreateBillOutput(
            bill_id=bill_id, adopted=adopted, early_callbacks=[CallbackSignal.from_stored(cb) for cb in early]
        )

    async def _archive(self, inp: CreateBillInput, outcome: Outcome, label: str, bill_id: str | None) -> None:
        ex = outcome.exchange
        await self._ledger.archive_exchange(
            method=ex.method or METHOD_BILLS_CREATE,
            request_redacted=dict(ex.request),
            response_body=ex.response_body,
            http_status=ex.http_status,
            outcome=label,
            elapsed_ms=ex.elapsed_ms,
            receipt_id=inp.receipt_id,
            payout_id=inp.payout_id,
            bill_id=bill_id,
            telegram_id=inp.telegram_id,
        )

    @staticmethod
    def _unknown(inp: CreateBillInput, attempt_no: int, why: str) -> ApplicationError:
        return ApplicationError(
            f"bills.create outcome unknown for {inp.payout_id} round {inp.round_no} attempt {attempt_no}: {why}",
            {"round_no": inp.round_no, "attempt_no": attempt_no, "evidence": why[:500]},
            type=failures.OUTCOME_UNKNOWN,
            non_retryable=True,
        )
