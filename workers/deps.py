"""Build the worker's dependencies from settings, and close them again: the activities, and the relay
that delivers payout events to the channels listed in `event_channels`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

import httpx

from activities.bill import BillActivities
from activities.ledger import LedgerActivities
from activities.notify import NotifyActivities
from activities.payee import PayeeResolver
from activities.reconcile import ReconcileActivities
from activities.retention import RetentionActivities
from activities.telecom import TelecomActivities
from ledger import Ledger
from notify import AnalyticsChannel, AnalyticsSink, LogSink, Relay, TelegramChannel, TelegramClient
from payouts.events import EventChannel
from payouts.msisdn import vault_from_settings
from portmone import PortmoneClient
from rabbit.events_channel import BonusEventsChannel, bonus_events_channel
from runtime.settings import Settings
from workers.registry import ActivitySet


def event_channels(
    settings: Settings,
    *,
    telegram: TelegramClient | None,
    sink: AnalyticsSink,
    bonus_events: BonusEventsChannel | None = None,
) -> list[EventChannel]:
    """Where payout events go, one line per channel (the relay delivers to each on its own). The user
    hears from Telegram unless EVENTS_USER_CHANNEL=bonus_events hands that to the bot's gateway."""
    channels: list[EventChannel] = [AnalyticsChannel(sink)]
    if telegram is not None and settings.events.user_channel == "telegram":
        channels.append(TelegramChannel(telegram))
    if bonus_events is not None:
        channels.append(bonus_events)
    return channels


@asynccontextmanager
async def activity_set(
    settings: Settings,
    sink: AnalyticsSink | None = None,
    *,
    ledger: Ledger | None = None,
    portmone: PortmoneClient | None = None,
) -> AsyncIterator[ActivitySet]:
    """Everything the activities and the relay need, opened once per worker process and closed on the way
    out. The relay is built, not started (`activities.relay.running()`).

    A `ledger` or `portmone` client given by the caller is used as it is (and left open)."""
    async with AsyncExitStack() as stack:
        if ledger is None:
            ledger = Ledger.from_url(settings.ledger.url)
            stack.push_async_callback(ledger.aclose)
        client = portmone
        if client is None:
            client = PortmoneClient.from_settings(settings.portmone)
            stack.push_async_callback(client.aclose)
        http = httpx.AsyncClient(timeout=settings.telecom.timeout_seconds)
        stack.push_async_callback(http.aclose)
        vault = vault_from_settings(settings.crypto.fernet_key_list(), settings.crypto.hmac_key.get_secret_value())
        token = settings.telegram.bot_token.get_secret_value()
        telegram = None
        if token:
            telegram = TelegramClient(settings.telegram.api_base, token, timeout=settings.telegram.timeout_seconds)
            stack.push_async_callback(telegram.aclose)
        sink = sink or LogSink()
        bonus_events = bonus_events_channel(settings)  # EVENTS_BONUS_QUEUE_ENABLED
        if bonus_events is not None:
            stack.push_async_callback(bonus_events.aclose)
        channels = event_channels(settings, telegram=telegram, sink=sink, bonus_events=bonus_events)
        yield ActivitySet(
            ledger=LedgerActivities(ledger, settings.ledger, settings.payout.eligibility_days),
            bill=BillActivities(
                client, ledger, vault, PayeeResolver(settings.portmone.payee_id, settings.portmone.payee_prefixes)
            ),
            telecom=TelecomActivities(
                settings.telecom.api_url, settings.telecom.api_token.get_secret_value(), vault, http
            ),
            notify=NotifyActivities(telegram, settings.telegram.operators_chat_id),
            reconcile=ReconcileActivities(
                ledger,
                callback_sla=timedelta(
                    seconds=settings.payout.callback_timeout_seconds + settings.reconcile.sla_grace_seconds
                ),
                active_days=settings.reconcile.active_days,
            ),
            retention=RetentionActivities(ledger, settings.ledger.archive_retention_days),
            relay=Relay.from_settings(ledger, channels, settings.outbox),
        )
