"""`payouts worker`: run both workers and the outbox relay until SIGTERM/SIGINT, letting in-flight
activities (and the event in hand) finish.

Telemetry comes first (the Temporal client's runtime exports the SDK metrics through it). The
worker's HTTP server (`/healthz`, `/readyz`, and `/metrics` unless Prometheus export is off) is up
from the start, and `/readyz` says ready only while every worker polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from runtime import telemetry
from runtime.settings import Settings
from runtime.temporal_client import connect
from workers.deps import activity_set
from workers.http import WorkerReadiness, start_worker_http
from workers.ledger_gauges import refresh_forever
from workers.registry import build_workers, relay_running

_log = logging.getLogger("payouts.worker")


async def run_worker(settings: Settings) -> None:
    settings.require("payouts worker", ["portmone", "crypto", "temporal"])
    telemetry.setup(settings.telemetry, "payouts-worker")
    client = await connect(settings)
    state = WorkerReadiness(client)
    http, port = await start_worker_http(settings, state)
    _log.info("worker health on http://%s:%s/readyz", settings.worker.metrics_host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with activity_set(settings) as activities, relay_running(activities):
            state.ledger = activities.ledger.ledger
            gauges = asyncio.create_task(
                refresh_forever(activities.ledger.ledger, settings.worker.ledger_gauges_interval_seconds)
            )
            workers = build_workers(
                client, activities, task_queue=settings.temporal.task_queue, tuning=settings.worker
            )
            runs = [asyncio.create_task(w.run()) for w in workers]
            state.workers = workers
            _log.info("workers running on task queues %s", ", ".join(w.task_queue for w in workers))
            await stop.wait()
            state.stopping = True
            _log.info("stopping: waiting for in-flight activities (graceful shutdown)")
            await asyncio.gather(*(w.shutdown() for w in workers))
            await asyncio.gather(*runs, return_exceptions=True)
            gauges.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gauges
    finally:
        await http.cleanup()
        await telemetry.flush()
    _log.info("workers stopped")
