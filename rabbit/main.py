"""`payouts consumer`: the consumer as a process of its own, until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from temporalio.client import Client

from payouts.msisdn import vault_from_settings
from rabbit.broker import broker_url
from rabbit.consumer import ReceiptConsumer
from rabbit.handler import ReceiptHandler
from rabbit.http import ConsumerReadiness, start_consumer_http
from runtime import telemetry
from runtime.settings import Settings
from runtime.temporal_client import connect

_log = logging.getLogger("payouts.rabbit")


def build_consumer(settings: Settings, client: Client) -> ReceiptConsumer:
    """The consumer with its handler (also what `payouts dev` runs in its own process)."""
    broker_url(settings.rabbit)  # RABBIT_URL missing: a ConfigError before anything starts
    vault = vault_from_settings(settings.crypto.fernet_key_list(), settings.crypto.hmac_key.get_secret_value())
    return ReceiptConsumer(settings.rabbit, ReceiptHandler(client, vault, settings))


async def run_consumer(settings: Settings) -> None:
    settings.require("payouts consumer", ["crypto", "rabbit"])
    telemetry.setup(settings.telemetry, "payouts-consumer")
    client = await connect(settings)
    consumer = build_consumer(settings, client)
    rabbit = settings.rabbit
    runner, port = await start_consumer_http(settings, ConsumerReadiness(consumer, client))
    _log.info("consumer health and metrics on http://%s:%s (/healthz, /readyz, /metrics)", rabbit.metrics_host, port)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, consumer.stop)
    try:
        await consumer.run()
    finally:
        await runner.cleanup()
