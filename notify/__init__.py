"""The notify room: tells people about payouts.

The ledger writes a payout event with each status change worth telling (`ledger.outbox`); the relay
(`notify.relay.Relay`, run by every worker) delivers each event to the channels: the user's Telegram
message (`TelegramChannel`), analytics (`AnalyticsChannel`), and whatever else implements
`payouts.events.EventChannel`. Also the Telegram client and the texts the operators' reminders use.
Arrows: notify → ledger, payouts.
"""

from notify.analytics import AnalyticsSink, LogSink, MemorySink
from notify.analytics_channel import AnalyticsChannel, analytics_event
from notify.relay import Relay
from notify.telegram import TelegramClient, TelegramError
from notify.telegram_channel import TelegramChannel
from notify.texts import event_text, reminder_text, user_text

__all__ = [
    "AnalyticsChannel",
    "AnalyticsSink",
    "LogSink",
    "MemorySink",
    "Relay",
    "TelegramChannel",
    "TelegramClient",
    "TelegramError",
    "analytics_event",
    "event_text",
    "reminder_text",
    "user_text",
]
