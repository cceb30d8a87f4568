"""The worker's own small HTTP server on WORKER_METRICS_PORT: `/healthz` (the process answers),
`/readyz` (Temporal and the ledger answer, and every worker polls its task queue) and, unless
TELEMETRY_METRICS_EXPORTERS leaves out prometheus, `/metrics`.

The server starts before the workers, so an orchestrator sees a worker that is up but not yet (or
no longer) polling as alive and not ready.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from aiohttp import web
from temporalio.client import Client
from temporalio.worker import Worker

from ledger import Ledger
from runtime import telemetry
from runtime.health import Check, NotReady, serve_health, temporal_check
from runtime.settings import Settings


@dataclass
class WorkerReadiness:
    """What `/readyz` asks; the worker process fills it in as it starts and stops."""

    client: Client
    ledger: Ledger | None = None
    workers: Sequence[Worker] = field(default_factory=tuple)
    stopping: bool = False

    async def _ledger(self) -> None:
        if self.ledger is None:
            raise NotReady("unavailable: not opened yet")
        await self.ledger.ping()

    async def _polling(self) -> None:
        if self.stopping:
            raise NotReady("stopping: finishing in-flight activities")
        if not self.workers:
            raise NotReady("not started yet")
        idle = [w.task_queue for w in self.workers if not w.is_running]
        if idle:
            raise NotReady(f"not polling: {', '.join(idle)}")

    def checks(self) -> dict[str, Check]:
        return {"ledger": self._ledger, "temporal": temporal_check(self.client), "workers": self._polling}


async def start_worker_http(
    settings: Settings, state: WorkerReadiness, *, port: int | None = None
) -> tuple[web.AppRunner, int]:
    """Serve on WORKER_METRICS_HOST:WORKER_METRICS_PORT (or `port`; 0 picks a free one); returns the
    runner and the bound port."""
    telemetry.setup(settings.telemetry, "payouts-worker")
    wanted = settings.worker.metrics_port if port is None else port
    return await serve_health(state, host=settings.worker.metrics_host, port=wanted,
                              prometheus=settings.telemetry.prometheus, who="the worker",
                              port_variable="WORKER_METRICS_PORT")  # fmt: skip
