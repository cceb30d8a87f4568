"""The user's Telegram message about a payout: "processing" when it is reserved, then that same message
edited into the outcome (or a fresh one when it cannot be edited). Its id is kept in the ledger.

A first message is sent at most once: the relay notes in the ledger that one may be on its way
(`MESSAGE_MAYBE_SENT`, in the transaction that claims the batch: `prepare` names the payouts) before it is
sent, so a relay that stops between sending it and recording its id never sends a second "processing"
(the outcome then comes as a message of its own: the first cannot be edited without its id). When
Telegram answers with a refusal, or was never reached, nothing was sent and the note goes. The channel
writes nothing itself: `deliver` hands the relay the message id to record with the batch's report.

Telegram's refusals (a blocked bot, an unknown chat) are final: logged, and the event counts as
delivered. Only an outage (5xx, 429, no connection) is `ChannelUnavailable`, tried again later.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from notify.telegram import TelegramClient, TelegramError
from notify.texts import event_text
from payouts.events import ChannelUnavailable, Outgoing, PayoutEvent, PayoutEventKind, UserMessage

_log = logging.getLogger("payouts.notify.telegram")


class TelegramChannel:
    name = "telegram"

    def __init__(self, client: TelegramClient) -> None:
        self._client = client

    def prepare(self, batch: Sequence[Outgoing]) -> set[str]:
        """The payouts that get their first message from this batch: no message recorded, and a text to send."""
        return {o.event.payout_id for o in batch if o.user_message is None and event_text(o.event) is not None}

    async def deliver(self, outgoing: Outgoing) -> UserMessage | None:
        event = outgoing.event
        text = event_text(event)
        if text is None:
            return None
        if outgoing.first_message:
            return await self._send_first(event, text)
        message_id = outgoing.user_message
        if message_id is None:
            raise ValueError(f"the first message of {event.payout_id} was not noted before sending (prepare)")
        if event.kind == PayoutEventKind.PENDING:
            return None  # sent before, or may have been (the relay stopped before it could say so)
        try:
            if message_id and await self._edited(event, message_id, text):
                return None
            sent = await self._send(event, text)
        except TelegramError as exc:
            if exc.retryable:
                raise ChannelUnavailable(str(exc)) from None
            self._refused(event, exc)
            return None
        return UserMessage(sent)

    async def _send(self, event: PayoutEvent, text: str) -> int:
        return await self._client.send_message(event.telegram_id, text)

    async def _send_first(self, event: PayoutEvent, text: str) -> UserMessage | None:
        """The payout's first message, noted as maybe sent before it goes; the note is dropped when Telegram
        says it was not sent (so a retry sends it, once)."""
        try:
            return UserMessage(await self._send(event, text))
        except TelegramError as exc:
            unsent = None if exc.maybe_delivered else UserMessage(None)
            if exc.retryable:
                raise ChannelUnavailable(str(exc), user_message=unsent) from None
            self._refused(event, exc)
            return unsent

    def _refused(self, event: PayoutEvent, exc: TelegramError) -> None:
        _log.warning("telegram refused the %s message of %s: %s", event.kind.value, event.payout_id, exc)

    async def _edited(self, event: PayoutEvent, message_id: int, text: str) -> bool:
        """Edit the user's message into `text`; False when it cannot be edited (gone, too old)."""
        try:
            await self._client.edit_message_text(event.telegram_id, message_id, text)
        except TelegramError as exc:
            if exc.retryable:
                raise
            if exc.not_modified:
                return True  # edited before (the relay stopped before it could say so)
            _log.info("telegram message of %s cannot be edited (%s): sending a new one", event.payout_id, exc)
            return False
        return True
