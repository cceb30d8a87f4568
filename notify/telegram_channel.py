"""The user's Telegram message about a payout: "processing" when it is reserved, then that same message
edited into the outcome (or a fresh one when it cannot be edited). Its id is kept in the ledger.

A first message is sent at most once: before it is sent the ledger notes that one may be on its way
(`MESSAGE_MAYBE_SENT`), so a relay that stops between sending it and recording its id never sends a
second "processing" (the outcome then comes as a message of its own: the first cannot be edited without
its id). When Telegram answers with a refusal, or was never reached, nothing was sent and the note goes.

Telegram's refusals (a blocked bot, an unknown chat) are final: logged, and the event counts as
delivered. Only an outage (5xx, 429, no connection) is `ChannelUnavailable`, tried again later.
"""

from __future__ import annotations

import logging

from ledger import MESSAGE_MAYBE_SENT, Ledger
from notify.telegram import TelegramClient, TelegramError
from notify.texts import event_text
from payouts.events import ChannelUnavailable, PayoutEvent, PayoutEventKind

_log = logging.getLogger("payouts.notify.telegram")


class TelegramChannel:
    name = "telegram"

    def __init__(self, client: TelegramClient, ledger: Ledger) -> None:
        self._client = client
        self._ledger = ledger

    async def deliver(self, event: PayoutEvent) -> None:
        text = event_text(event)
        if text is None:
            return
        message_id = await self._ledger.outbox.user_message(event.payout_id)
        if event.kind == PayoutEventKind.PENDING and message_id is not None:
            return  # sent before, or may have been (the relay stopped before it could say so)
        try:
            if message_id and await self._edited(event, message_id, text):
                return
            sent = await self._send_first(event, text) if message_id is None else await self._send(event, text)
        except TelegramError as exc:
            if exc.retryable:
                raise ChannelUnavailable(str(exc)) from None
            _log.warning("telegram refused the %s message of %s: %s", event.kind.value, event.payout_id, exc)
            return
        await self._ledger.outbox.set_user_message(event.payout_id, sent)

    async def _send(self, event: PayoutEvent, text: str) -> int:
        return await self._client.send_message(event.telegram_id, text)

    async def _send_first(self, event: PayoutEvent, text: str) -> int:
        """The payout's first message: noted as maybe sent before it goes, the note dropped when Telegram
        says it was not (so a retry sends it, once)."""
        await self._ledger.outbox.set_user_message(event.payout_id, MESSAGE_MAYBE_SENT)
        try:
            return await self._send(event, text)
        except TelegramError as exc:
            if not exc.maybe_delivered:
                await self._ledger.outbox.set_user_message(event.payout_id, None)
            raise

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
