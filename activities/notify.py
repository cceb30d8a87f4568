"""Operator reminders, off the money path, on their own task queue (a slow Telegram cannot starve
payouts, and a failure here never fails a payout). The shopper and analytics hear about payouts from
the ledger's outbox (notify/relay.py), not from activities."""

from __future__ import annotations

import logging

from temporalio import activity
from temporalio.exceptions import ApplicationError

from notify.telegram import TelegramClient, TelegramError
from notify.texts import reminder_text
from payouts import failures
from payouts.escalation import is_known
from payouts.models import ReminderInput
from payouts.names import ActivityName
from runtime import metrics

_log = logging.getLogger("payouts.notify")


class NotifyActivities:
    def __init__(self, telegram: TelegramClient | None, operators_chat_id: str | None = None) -> None:
        self._telegram = telegram
        self._operators_chat = operators_chat_id

    @activity.defn(name=ActivityName.REMIND_OPERATORS)
    async def remind_operators(self, inp: ReminderInput) -> None:
        """Metric, log line and (when TELEGRAM_OPERATORS_CHAT_ID is set) a message to the operators' chat."""
        family = inp.reason.partition(":")[0] if is_known(inp.reason) else metrics.UNKNOWN_REASON
        metrics.record_reminder(family)
        _log.warning("payout %s still waits in manual review (reason %s)", inp.payout_id, inp.reason)
        if self._telegram is not None and self._operators_chat:
            text = reminder_text(inp)
            try:
                await self._telegram.send_message(self._operators_chat, text)
            except TelegramError as exc:
                if exc.retryable:
                    # Telegram's own words stay in the worker log; the failure carries ours (readable).
                    _log.warning("payout %s: the operators' chat did not take the reminder: %s", inp.payout_id, exc)
                    raise ApplicationError(
                        "the operators' chat did not take the reminder (Telegram unavailable); retried",
                        type=failures.TELEGRAM_UNAVAILABLE,
                    ) from None
