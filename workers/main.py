"""`payouts worker`: run both workers and the outbox relay until SIGTERM/SIGINT, letting in-flight
activities (and the event in hand) finish."""

from __future__ import annotations

import asyncio
import logging
import signal

from prometheus_client import start_http_server

from payouts.settings import Settings
from payouts.temporal_client import connect
from workers.deps import activity_set
from workers.registry import build_workers, relay_running

_log = logging.getLogger("payouts.worker")


async def run_worker(settings: Settings) -> None:
    settings.require("payouts worker", ["portmone", "crypto"])
    client = await connect(settings)
    if settings.worker.metrics_port is not None:
        start_http_server(settings.worker.metrics_port, addr=settings.worker.metrics_host)
        _log.info("worker metrics on http://%s:%s/metrics", settings.worker.metrics_host, settings.worker.metrics_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with activity_set(settings) as activities, relay_running(activities):
        workers = build_workers(client, activities, task_queue=settings.temporal.task_queue)
        runs = [asyncio.create_task(w.run()) for w in workers]
        _log.info("workers running on task queues %s", ", ".join(w.task_queue for w in workers))
        await stop.wait()
        _log.info("stopping: waiting for in-flight activities (graceful shutdown)")
        await asyncio.gather(*(w.shutdown() for w in workers))
        await asyncio.gather(*runs, return_exceptions=True)
    _log.info("workers stopped")
