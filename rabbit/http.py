"""`payouts consumer`'s own small HTTP server on RABBIT_METRICS_HOST:RABBIT_METRICS_PORT: `/healthz`
(the process answers), `/readyz` (it consumes the intake queue, and Temporal answers: the rule the
webhook and the worker share, runtime.health) and, unless TELEMETRY_METRICS_EXPORTERS leaves out
prometheus, `/metrics`.

The server starts before the consumer connects, so an orchestrator sees a consumer that is up but
not (or no longer) consuming as alive and not ready.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from temporalio.client import Client

from rabbit.consumer import ReceiptConsumer
from runtime import telemetry
from runtime.health import Check, NotReady, healthz, readyz_answer, temporal_check
from runtime.settings import ConfigError, Settings


@dataclass
class ConsumerReadiness:
    """What `/readyz` asks of the consumer process."""

    consumer: ReceiptConsumer
    client: Client

    async def _consuming(self) -> None:
        if self.consumer.stopping:
            raise NotReady("stopping: finishing the messages in hand")
        if not self.consumer.consuming.is_set():
            raise NotReady("not consuming: connecting to RabbitMQ")

    def checks(self) -> dict[str, Check]:
        return {"rabbitmq": self._consuming, "temporal": temporal_check(self.client)}


_READINESS: web.AppKey[ConsumerReadiness] = web.AppKey("readiness", ConsumerReadiness)


async def readyz(request: web.Request) -> web.Response:
    return await readyz_answer(request.app[_READINESS].checks())


def build_consumer_app(state: ConsumerReadiness, *, prometheus: bool = True) -> web.Application:
    app = web.Application()
    app[_READINESS] = state
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if prometheus:
        app.router.add_get("/metrics", telemetry.metrics_endpoint)
    return app


async def start_consumer_http(settings: Settings, state: ConsumerReadiness) -> tuple[web.AppRunner, int]:
    """Serve on RABBIT_METRICS_HOST:RABBIT_METRICS_PORT (0 picks a free port); returns the runner and
    the bound port."""
    rabbit = settings.rabbit
    app = build_consumer_app(state, prometheus=settings.telemetry.prometheus)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, rabbit.metrics_host, rabbit.metrics_port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"the consumer cannot serve /healthz, /readyz and /metrics on {rabbit.metrics_host}:{rabbit.metrics_port} "
            f"({exc.strerror}): set RABBIT_METRICS_PORT to a free port (0 picks one)"
        ) from None
    bound = int(runner.addresses[0][1]) if runner.addresses else rabbit.metrics_port
    return runner, bound
