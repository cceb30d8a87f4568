"""The worker's own small HTTP server: `/metrics` for Prometheus (on by default, `WORKER_METRICS_PORT`).

An aiohttp application, so the worker's health routes can join it later.
"""

from __future__ import annotations

from aiohttp import web

from payouts import telemetry
from payouts.settings import ConfigError, Settings


def build_worker_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/metrics", telemetry.metrics_endpoint)
    return app


async def start_worker_http(settings: Settings, *, port: int | None = None) -> tuple[web.AppRunner, int]:
    """Serve on WORKER_METRICS_HOST:WORKER_METRICS_PORT (or `port`; 0 picks a free one); returns the
    runner and the bound port."""
    telemetry.setup(settings.telemetry, "payouts-worker")
    runner = web.AppRunner(build_worker_app(), access_log=None)
    await runner.setup()
    wanted = settings.worker.metrics_port if port is None else port
    site = web.TCPSite(runner, settings.worker.metrics_host, wanted)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"the worker cannot serve /metrics on {settings.worker.metrics_host}:{wanted} ({exc.strerror}): set "
            "WORKER_METRICS_PORT to a free port (0 picks one), or leave prometheus out of TELEMETRY_METRICS_EXPORTERS"
        ) from None
    bound = int(runner.addresses[0][1]) if runner.addresses else wanted
    return runner, bound
