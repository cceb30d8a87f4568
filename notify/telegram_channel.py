"""The user's Telegram message about a payout: "processing" when it is reserved, then that same message
edited into the outcome (or a fresh one when it cannot be edited). Its id is kept in the ledger.

Telegram's refusals (a blocked bot, an unknown chat) are final: logged, and the event counts as
delivered. Only an outage (5xx, 429, no connection) is `ChannelUnavailable`, tried again later.
"""

from __future__ import annotations

import logging

from ledger import Ledger
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
            return  # sent before (the relay stopped before it could say so)
        try:
            if message_id is not None and await self._edited(event, message_id, text):
                return
            sent = await self._client.send_message(event.telegram_id, text)
        except TelegramError as exc:
            if exc.retryable:
                raise ChannelUnavailable(str(exc)) from None
            _log.warning("telegram refused the %s message of %s: %s", event.kind.value, event.payout_id, exc)
            return
        await self._ledger.outbox.set_user_message(event.payout_id, sent)

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
