"""Build and run the webhook application."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from ledger import Ledger
from payouts.msisdn import vault_from_settings
from runtime import telemetry
from runtime.settings import Settings
from runtime.temporal_client import connect
from webhook.callback import portmone_callback
from webhook.codec_server import setup_codec_server
from webhook.deps import WebhookDeps
from webhook.health import healthz, readyz
from webhook.intake import accept_receipt
from webhook.keys import DEPS
from webhook.observability import ACCESS_LOG, AccessLogger, observe
from webhook.redelivery import redelivery_context
from webhook.tls import server_ssl_context

_log = logging.getLogger("payouts.webhook")
_LINGER_SECONDS = 10.0  # aiohttp's default


def build_app(deps: WebhookDeps) -> web.Application:
    # Every handler reads its body through webhook.body.read_body (cap and deadline); the app-wide
    # cap is a backstop for any other read.
    telemetry.setup(deps.settings.telemetry, "payouts-webhook")  # before the application: tracing instruments it
    app = web.Application(client_max_size=deps.settings.webhook.max_body_bytes, middlewares=[observe])
    app[DEPS] = deps
    app.router.add_post("/v1/receipts/accepted", accept_receipt)
    app.router.add_post("/portmone/callback", portmone_callback)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if deps.settings.telemetry.prometheus:
        app.router.add_get("/metrics", telemetry.metrics_endpoint)
    setup_codec_server(app, deps.settings)
    app.cleanup_ctx.append(redelivery_context)
    return app


async def start_webhook(deps: WebhookDeps, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start on host:port (0 picks a free port); returns the runner and the bound port."""
    ssl_context = server_ssl_context(deps.settings.webhook)  # HTTPS (and client certificates) when configured
    w = deps.settings.webhook
    runner = web.AppRunner(
        build_app(deps),
        access_log=ACCESS_LOG,
        access_log_class=AccessLogger,
        # Header bounds are enforced by aiohttp's parser before any handler runs: 400, nothing read.
        max_line_size=w.max_header_bytes,
        max_field_size=w.max_header_bytes,
        max_headers=w.max_headers,
        # After a 408 (or 413) the unread rest of the body is drained at most this long, then closed.
        lingering_time=min(_LINGER_SECONDS, w.body_timeout_seconds),
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    bound = int(runner.addresses[0][1]) if runner.addresses else port
    return runner, bound


async def run_webhook(settings: Settings) -> None:
    settings.require("payouts webhook", ["crypto", "webhook", "temporal"])
    telemetry.setup(settings.telemetry, "payouts-webhook")
    ledger = Ledger.from_url(settings.ledger.url)
    client = await connect(settings)
    vault = vault_from_settings(settings.crypto.fernet_key_list(), settings.crypto.hmac_key.get_secret_value())
    deps = WebhookDeps(settings=settings, ledger=ledger, temporal=client, vault=vault)
    runner, port = await start_webhook(deps, settings.webhook.host, settings.webhook.port)
    scheme = "https" if settings.webhook.tls_cert_path is not None else "http"
    _log.info("webhook listening on %s://%s:%s", scheme, settings.webhook.host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await ledger.aclose()
        await telemetry.flush()
