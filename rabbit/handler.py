"""What to do with one `receipt.accepted` message: start its payout, ignore it, dead-letter it, or try
it again later. No broker here: the consumer carries the answer out."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from pydantic import ValidationError
from temporalio.client import Client

from payouts.msisdn import MsisdnError, MsisdnVault
from payouts.receipt import to_payout_request
from rabbit.contract import DeadLetterReason, Refused, invalid_payload, read_message
from runtime.settings import Settings
from runtime.start import StartOutcome, StartUnavailable, start_payout

_log = logging.getLogger("payouts.rabbit.handler")


class Action(StrEnum):
    ACK = "ack"  # done: acknowledge
    DEAD_LETTER = "dead_letter"  # publish to the dead-letter queue with the reason, then acknowledge
    RETRY = "retry"  # publish to the delay queue, then acknowledge; it comes back after the delay


@dataclass(frozen=True)
class Handling:
    action: Action
    # Metric label: started, existing, ignored, dead_lettered, retried (Temporal), failed (handling raised).
    outcome: str
    reason: DeadLetterReason | None = None
    detail: str = ""
    workflow_id: str | None = None


class ReceiptHandler:
    def __init__(self, client: Client, vault: MsisdnVault, settings: Settings) -> None:
        self._client = client
        self._vault = vault
        self._settings = settings

    async def handle(self, body: bytes) -> Handling:
        try:
            return await self._handle(body)
        except Refused as refused:
            _log.warning("message dead-lettered: %s", refused)
            return Handling(Action.DEAD_LETTER, "dead_lettered", refused.reason, refused.detail)

    async def _handle(self, body: bytes) -> Handling:
        decision = read_message(body, self._settings.rabbit.max_message_bytes)
        if decision.receipt is None:
            _log.info("message with status %r acknowledged: only accepted receipts start a payout", decision.status)
            return Handling(Action.ACK, "ignored")
        receipt = decision.receipt
        try:
            request = to_payout_request(receipt, self._vault, self._settings.telegram.default_language)
        except MsisdnError as exc:
            raise Refused(DeadLetterReason.INVALID_PAYLOAD, f"msisdn_token: {exc}") from None
        except ValidationError as exc:
            raise invalid_payload(exc) from None
        try:
            started = await start_payout(self._client, request, self._settings)
        except StartUnavailable as exc:
            _log.warning("receipt %s: %s; trying again after the delay", receipt.receipt_id, exc)
            return Handling(Action.RETRY, "retried", detail=str(exc))
        if started.outcome is StartOutcome.EXISTING_DIFFERS:
            raise Refused(
                DeadLetterReason.CONFLICTING_DUPLICATE,
                f"{started.workflow_id} was started by a request that differs in {', '.join(started.differing)}",
            )
        _log.info("receipt %s -> %s (%s)", receipt.receipt_id, started.workflow_id, started.outcome.value)
        return Handling(Action.ACK, started.outcome.value, workflow_id=started.workflow_id)
