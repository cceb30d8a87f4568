"""Build and run the webhook: two listeners of one process.

The public listener (`WEBHOOK_HOST:WEBHOOK_PORT`, the one Portmone reaches from the internet) serves
`POST /portmone/callback` and nothing else: every other method or path is 404. The internal listener
(`WEBHOOK_INTERNAL_HOST:WEBHOOK_INTERNAL_PORT`, for the stack's own network and the operators') serves
the bot's intake, the Web UI's codec, health and metrics. Both speak HTTPS when the webhook's TLS is
configured.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

from aiohttp import web
from aiohttp.web_response import StreamResponse

from ledger import Ledger
from payouts.msisdn import vault_from_settings
from runtime import telemetry
from runtime.settings import Settings
from runtime.temporal_client import connect
from webhook.callback import portmone_callback
from webhook.codec_server import setup_codec_server
from webhook.deps import WebhookDeps
from webhook.errors import error
from webhook.health import healthz, readyz
from webhook.intake import accept_receipt
from webhook.keys import DEPS
from webhook.marks import MARKS, SignalledMarks, marks_context
from webhook.observability import ACCESS_LOG, AccessLogger, Handler, observe
from webhook.redelivery import redelivery_context
from webhook.tls import server_ssl_context

_log = logging.getLogger("payouts.webhook")
_LINGER_SECONDS = 10.0  # aiohttp's default


CALLBACK_PATH = "/portmone/callback"


@web.middleware
async def _callbacks_only(request: web.Request, handler: Handler) -> StreamResponse:
    """The public listener knows one route: another method on it is 404 as well, not 405."""
    if request.match_info.http_exception is not None:
        return error(404, "not found")
    return await handler(request)


def build_public_app(deps: WebhookDeps) -> web.Application:
    """`POST /portmone/callback` only; its signalled marks are batched (webhook.marks) while it runs."""
    telemetry.setup(deps.settings.telemetry, "payouts-webhook")  # before the application: tracing instruments it
    # The callback handler reads its body through webhook.body.read_body (cap and deadline); the
    # app-wide cap is a backstop for any other read.
    app = web.Application(client_max_size=deps.settings.webhook.max_body_bytes, middlewares=[observe, _callbacks_only])
    app[DEPS] = deps
    app[MARKS] = SignalledMarks(deps.ledger, grace=deps.settings.webhook.redeliver_after_seconds)
    app.router.add_post(CALLBACK_PATH, portmone_callback)
    app.cleanup_ctx.append(marks_context)
    return app


def build_internal_app(deps: WebhookDeps) -> web.Application:
    """Intake, the codec, health and metrics; the redelivery sweep runs with it."""
    telemetry.setup(deps.settings.telemetry, "payouts-webhook")
    app = web.Application(client_max_size=deps.settings.webhook.max_body_bytes, middlewares=[observe])
    app[DEPS] = deps
    app.router.add_post("/v1/receipts/accepted", accept_receipt)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if deps.settings.telemetry.prometheus:
        app.router.add_get("/metrics", telemetry.metrics_endpoint)
    setup_codec_server(app, deps.settings)
    app.cleanup_ctx.append(redelivery_context)
    return app


@dataclass
class Listeners:
    """The running webhook: its two listeners' bound ports."""

    public_port: int
    internal_port: int
    runners: tuple[web.AppRunner, web.AppRunner]

    async def cleanup(self) -> None:
        for runner in self.runners:
            await runner.cleanup()


async def start_webhook(
    deps: WebhookDeps, host: str, port: int, internal_host: str, internal_port: int
) -> Listeners:
    """Start the public listener on host:port and the internal one on internal_host:internal_port (0 picks
    a free port)."""
    public_runner, public_bound = await _listen(deps, build_public_app(deps), host, port)
    try:
        internal_runner, internal_bound = await _listen(deps, build_internal_app(deps), internal_host, internal_port)
    except BaseException:
        await public_runner.cleanup()
        raise
    return Listeners(public_bound, internal_bound, (public_runner, internal_runner))


async def _listen(deps: WebhookDeps, app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    ssl_context = server_ssl_context(deps.settings.webhook)  # HTTPS (and client certificates) when configured
    w = deps.settings.webhook
    runner = web.AppRunner(
        app,
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
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = int(runner.addresses[0][1]) if runner.addresses else port
    return runner, bound


async def run_webhook(settings: Settings) -> None:
    settings.require("payouts webhook", ["crypto", "webhook", "temporal"])
    telemetry.setup(settings.telemetry, "payouts-webhook")
    ledger = Ledger.from_url(settings.ledger.url)
    client = await connect(settings)
    vault = vault_from_settings(settings.crypto.fernet_key_list(), settings.crypto.hmac_key.get_secret_value())
    deps = WebhookDeps(settings=settings, ledger=ledger, temporal=client, vault=vault)
    w = settings.webhook
    listeners = await start_webhook(deps, w.host, w.port, w.internal_host, w.internal_port)
    scheme = "https" if w.tls_cert_path is not None else "http"
    _log.info(
        "webhook listening: Portmone callbacks on %s://%s:%s, intake, codec, health and metrics on %s://%s:%s",
        scheme, w.host, listeners.public_port, scheme, w.internal_host, listeners.internal_port,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await listeners.cleanup()
        await ledger.aclose()
        await telemetry.flush()
