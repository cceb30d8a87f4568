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
from runtime.health import Check, NotReady, serve_health, temporal_check
from runtime.settings import Settings


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


async def start_consumer_http(settings: Settings, state: ConsumerReadiness) -> tuple[web.AppRunner, int]:
    """Serve on RABBIT_METRICS_HOST:RABBIT_METRICS_PORT (0 picks a free port); returns the runner and
    the bound port."""
    rabbit = settings.rabbit
    return await serve_health(state, host=rabbit.metrics_host, port=rabbit.metrics_port,
                              prometheus=settings.telemetry.prometheus, who="the consumer",
                              port_variable="RABBIT_METRICS_PORT")  # fmt: skip
