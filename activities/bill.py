"""`create_bill`: the one place a Portmone bill is requested, behind a write-ahead attempt log.

The request is validated first; then the ledger writes the attempt (`prepared`) in the transaction
that applies the new-bill rule (no new bill while an earlier one of any round may hold money); then
it is sent; then its ending is written (`answered`, `not_sent`, `unknown`). A retry that finds an
attempt of its round with a bill adopts that bill; one that finds an attempt without an ending (the
worker died mid-call) or with an unknown outcome never re-sends: the payout goes to manual review
with the evidence.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.ledger import LedgerStep
from activities.payee import PayeeResolver, PayeeUnknown
from ledger import (
    AttemptRecord,
    ExchangeEntry,
    IllegalTransition,
    Ledger,
    LedgerError,
    LedgerUnavailable,
    NewBillRefused,
)
from payouts import failures
from payouts.models import CallbackSignal, CreateBillInput, CreateBillOutput, bill_comment
from payouts.msisdn import MsisdnError, MsisdnVault
from payouts.names import ActivityName
from portmone import (
    AnsweredFail,
    AnsweredOk,
    BillRequest,
    ErrorKind,
    NotSent,
    Outcome,
    PortmoneClient,
    mask_phones,
)
from portmone.protocol import METHOD_BILLS_CREATE
from runtime import log_context, metrics

T = TypeVar("T")

# After a send, the ledger writes are retried (a blip must not turn a bill we know into an unknown
# one) for at most this long, and never past the attempt's time less a margin for the answer to
# reach Temporal. A longer outage escalates, the bill id in the failure, and the bill's callback still
# finds the payout by its echo.
_PERSIST_AT_MOST = timedelta(seconds=20)
_PERSIST_MARGIN = timedelta(seconds=5)
_NO_ENDING = "no recorded ending: the worker stopped during the call"
_FIRST_PAUSE_SECONDS = 0.2
_MAX_PAUSE_SECONDS = 2.0


class BillActivities:
    def __init__(self, client: PortmoneClient, ledger: Ledger, vault: MsisdnVault, payees: PayeeResolver) -> None:
        self._client = client
        self._ledger = ledger
        self._vault = vault
        self._payees = payees

    @activity.defn(name=ActivityName.CREATE_BILL)
    async def create_bill(self, inp: CreateBillInput) -> CreateBillOutput:
        try:
            prepared = await self._prepare(inp)
        except LedgerUnavailable as exc:
            # Nothing was sent: the workflow asks again later (an outage delays the payout, no more).
            metrics.record_ledger_unavailable(LedgerStep.CREATE_BILL)
            message = "bills.create not sent: the ledger could not record the attempt"
            raise ApplicationError(message, type=failures.ATTEMPT_NOT_RECORDED, non_retryable=True) from exc
        if isinstance(prepared, CreateBillOutput):
            return prepared
        request, attempt = prepared
        outcome = await self._client.send(request)
        return await self._settle(inp, attempt, outcome)

    async def _prepare(self, inp: CreateBillInput) -> CreateBillOutput | tuple[BillRequest, AttemptRecord]:
        """Everything before the send: the request built from the decrypted phone, then in one ledger
        transaction `prepared` written under the new-bill rule, or the round's earlier attempt that may
        have reached Portmone found instead (its bill adopted, or its doubt raised)."""
        try:
            msisdn = self._vault.decrypt(inp.msisdn_token)
            request = self._client.bill_request(
                payee_id=self._payees.resolve(inp.payee_id, msisdn),
                contract_number=msisdn,
                amount_kopecks=inp.amount_kopecks,
                currency=inp.currency,
                comment=bill_comment(inp.receipt_id),
            )
        except (MsisdnError, PayeeUnknown, ValueError) as exc:
            raise ApplicationError(str(exc), type=failures.BAD_PAYOUT_DATA, non_retryable=True) from None
        del msisdn
        try:
            started = await self._ledger.attempts.start(inp.payout_id, inp.round_no)
        except NewBillRefused as refused:
            raise ApplicationError(
                str(refused),
                [bill.attempt_id for bill in refused.open_bills],
                type=failures.BILL_MAY_BE_LIVE,
                non_retryable=True,
            ) from None
        except IllegalTransition as conflict:
            # The payout moved on meanwhile (a callback, a late answer): a state conflict, nothing was sent.
            raise ApplicationError(str(conflict), type=failures.ILLEGAL_TRANSITION, non_retryable=True) from None
        if started.attempt is None:
            return await self._adopt_or_refuse(inp, started.earlier)
        return request, started.attempt

    async def _adopt_or_refuse(self, inp: CreateBillInput, earlier: list[AttemptRecord]) -> CreateBillOutput:
        """An earlier attempt of the round may have reached Portmone: adopt its bill, or a person decides."""
        for attempt in earlier:
            if attempt.bill_id:
                activity.logger.info("adopting bill of attempt %s for %s", attempt.attempt_no, inp.payout_id)
                if attempt.state == "prepared":  # its bill id came from Portmone's callback (echo), not an answer
                    await self._ledger.attempts.finish(attempt.id, "unknown", detail=_NO_ENDING)
                return await self._route(inp, attempt.bill_id, adopted=True)
        for attempt in earlier:
            if attempt.state == "prepared":
                await self._ledger.attempts.finish(attempt.id, "unknown", detail=_NO_ENDING)
                raise self._unknown(inp, attempt.attempt_no, "an earlier attempt has no recorded ending")
            if attempt.state == "unknown":
                why = attempt.detail or "an earlier attempt's outcome is unknown"
                raise self._unknown(inp, attempt.attempt_no, why)
        raise LedgerError(f"no attempt of {inp.payout_id} round {inp.round_no} may have reached Portmone")

    async def _settle(self, inp: CreateBillInput, attempt: AttemptRecord, outcome: Outcome) -> CreateBillOutput:
        """The send's ending, its exchange and (for a bill) its route, in one ledger transaction."""
        if isinstance(outcome, AnsweredOk):
            bill_id = outcome.bill.bill_id
            log_context.bind(bill_id=bill_id)
            exchange = self._exchange(inp, outcome, "answered_ok", bill_id)
            try:
                ending = await self._persist(
                    lambda: self._ledger.attempts.end(attempt.id, "answered", bill_id=bill_id, exchange=exchange)
                )
            except LedgerUnavailable as exc:
                # The bill exists and we know its id, but cannot write it down: never re-send. The id
                # goes into the failure (the workflow shows it), and its callback still finds the payout
                # by what it echoes (webhook.callback, ledger.callbacks.route_by_echo).
                raise self._unknown(
                    inp, attempt.attempt_no, f"Portmone created bill {bill_id}; the ledger could not record it: {exc}"
                ) from None
            early = [CallbackSignal.from_stored(cb) for cb in ending.early_callbacks]
            return CreateBillOutput(bill_id=bill_id, adopted=False, early_callbacks=early)
        if isinstance(outcome, AnsweredFail):
            err = outcome.error
            # Portmone's texts may echo the contract number: masked before the ledger or history sees them.
            text = mask_phones(err.description or err.message)
            await self._ledger.attempts.end(
                attempt.id, "answered", error_code=err.code, detail=mask_phones(err.message)[:500],
                exchange=self._exchange(inp, outcome, "answered_fail", None),
            )  # fmt: skip
            if err.fell_back_to_v1:
                activity.logger.warning("portmone answered in protocol version 1 (no error_description)")
            message = f"Portmone refused bills.create: {err.code} {text}"
            if err.kind == ErrorKind.TRANSIENT:
                raise ApplicationError(message, err.code, type=failures.TRANSIENT)
            raise ApplicationError(message, err.code, type=failures.PERMANENT, non_retryable=True)
        if isinstance(outcome, NotSent):
            await self._ledger.attempts.end(
                attempt.id,
                "not_sent",
                detail=outcome.reason[:500],
                exchange=self._exchange(inp, outcome, "not_sent", None),
            )
            raise ApplicationError(f"bills.create not sent: {outcome.reason}", type=failures.NOT_SENT)
        await self._ledger.attempts.end(
            attempt.id,
            "unknown",
            detail=outcome.reason[:500],
            exchange=self._exchange(inp, outcome, "outcome_unknown", None),
        )
        raise self._unknown(inp, attempt.attempt_no, outcome.reason)

    async def _persist(self, write: Callable[[], Awaitable[T]]) -> T:
        """A ledger write after a bill was created, retried through a short outage while the attempt's
        time allows (its start-to-close, less a margin for the answer to reach Temporal)."""
        loop = asyncio.get_running_loop()
        attempt = activity.info().start_to_close_timeout or timedelta(seconds=30)
        budget = min(_PERSIST_AT_MOST, attempt - _PERSIST_MARGIN)
        deadline = loop.time() + budget.total_seconds()
        pause = _FIRST_PAUSE_SECONDS
        while True:
            try:
                return await write()
            except LedgerUnavailable:
                if loop.time() + pause > deadline:
                    raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, _MAX_PAUSE_SECONDS)

    async def _route(self, inp: CreateBillInput, bill_id: str, *, adopted: bool) -> CreateBillOutput:
        early = await self._ledger.callbacks.set_bill_id(inp.payout_id, bill_id)
        return CreateBillOutput(
            bill_id=bill_id, adopted=adopted, early_callbacks=[CallbackSignal.from_stored(cb) for cb in early]
        )

    @staticmethod
    def _exchange(inp: CreateBillInput, outcome: Outcome, label: str, bill_id: str | None) -> ExchangeEntry:
        ex = outcome.exchange
        return ExchangeEntry(
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
