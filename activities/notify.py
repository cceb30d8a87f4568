"""Side-effect activities off the money path: Telegram messages, analytics, operator reminders.

They run on their own task queue so a slow Telegram cannot starve payouts, and a failure here
never fails a payout.
"""

from __future__ import annotations

import logging

from temporalio import activity
from temporalio.exceptions import ApplicationError

from notify.analytics import AnalyticsSink
from notify.telegram import TelegramClient, TelegramError
from notify.texts import reminder_text, user_text
from payouts import metrics
from payouts.escalation import is_known
from payouts.models import AnalyticsEvent, NotifyInput, NotifyOutput, ReminderInput

_log = logging.getLogger("payouts.notify")


class NotifyActivities:
    def __init__(
        self, telegram: TelegramClient | None, sink: AnalyticsSink, operators_chat_id: str | None = None
    ) -> None:
        self._telegram = telegram
        self._sink = sink
        self._operators_chat = operators_chat_id

    @activity.defn(name="notify.user")
    async def notify(self, inp: NotifyInput) -> NotifyOutput:
        """Send (or edit the placeholder into) the user's message; refusals are not retried."""
        if self._telegram is None:
            return NotifyOutput(delivered=False)
        text = user_text(inp.kind, inp.language, inp.amount_kopecks)
        try:
            if inp.message_id is not None:
                try:
                    mid = await self._telegram.edit_message_text(inp.telegram_id, inp.message_id, text)
                    return NotifyOutput(delivered=True, message_id=mid)
                except TelegramError as exc:
                    if exc.retryable:
                        raise
                    # The placeholder is gone or unchanged: send a fresh message instead.
            mid = await self._telegram.send_message(inp.telegram_id, text)
            return NotifyOutput(delivered=True, message_id=mid)
        except TelegramError as exc:
            if exc.retryable:
                raise ApplicationError(str(exc), type="TelegramUnavailable") from None
            _log.warning("telegram refused %s message: %s", inp.kind.value, exc)
            return NotifyOutput(delivered=False)

    @activity.defn(name="analytics.emit")
    async def emit_event(self, event: AnalyticsEvent) -> None:
        await self._sink.emit(event)

    @activity.defn(name="notify.remind_operators")
    async def remind_operators(self, inp: ReminderInput) -> None:
        """Metric, log line and (when TELEGRAM_OPERATORS_CHAT_ID is set) a message to the operators' chat."""
        family = inp.reason.partition(":")[0] if is_known(inp.reason) else "unknown"
        metrics.record_reminder(family)
        _log.warning("payout %s still waits in manual review (reason %s)", inp.payout_id, inp.reason)
        if self._telegram is not None and self._operators_chat:
            text = reminder_text(inp)
            try:
                await self._telegram.send_message(self._operators_chat, text)
            except TelegramError as exc:
                if exc.retryable:
                    raise ApplicationError(str(exc), type="TelegramUnavailable") from None
