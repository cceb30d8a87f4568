"""The worker's own HTTP server: `/metrics` in the Prometheus text format, `/healthz` and `/readyz`
(Temporal and the ledger answer, every worker polls), and a port already taken is a readable start
error, not a traceback."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from ledger import Ledger, upgrade
from runtime import metrics
from runtime.settings import ConfigError, Settings, WorkerSettings
from tests.cli_helpers import payouts_process, stop_cleanly
from tests.metrics import Exposition
from tests.stack import free_port, running_stack, settings_env
from workers.http import WorkerReadiness, start_worker_http


@asynccontextmanager
async def worker_http(state: WorkerReadiness, **settings: Any) -> AsyncIterator[str]:
    settings_ = Settings(env="dev", worker=WorkerSettings(metrics_port=0), **settings)
    runner, port = await start_worker_http(settings_, state)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_metrics_are_served_and_a_taken_port_is_named(env: WorkflowEnvironment) -> None:
    state = WorkerReadiness(env.client)
    async with worker_http(state) as url, httpx.AsyncClient() as http:
        before = Exposition.parse((await http.get(f"{url}/metrics")).text)
        metrics.record_portmone_request("bills.create")
        response = await http.get(f"{url}/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        after = Exposition.parse(response.text)
        moved = after.value("portmone_request_total", method="bills.create") - before.value(
            "portmone_request_total", method="bills.create"
        )
        assert moved == 1

        port = int(url.rsplit(":", 1)[1])
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}.*WORKER_METRICS_PORT"):
            await start_worker_http(Settings(env="dev"), state, port=port)


@activity.defn(name="health.noop")
async def noop() -> None:
    return None


async def readyz(http: httpx.AsyncClient, url: str) -> tuple[int, dict[str, str]]:
    response = await http.get(f"{url}/readyz")
    body = response.json()
    assert body["ready"] is (response.status_code == 200)
    return response.status_code, body["checks"]


async def test_readyz_names_what_is_missing_until_every_worker_polls(env: WorkflowEnvironment, tmp_path: Path) -> None:
    url_of_ledger = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    await asyncio.to_thread(upgrade, url_of_ledger)
    ledger = Ledger.from_url(url_of_ledger)
    state = WorkerReadiness(env.client)
    worker = Worker(env.client, task_queue=f"health-{uuid.uuid4().hex[:8]}", activities=[noop])
    try:
        async with worker_http(state, telemetry={"metrics_exporters": "none"}) as url, httpx.AsyncClient() as http:
            assert (await http.get(f"{url}/healthz")).json() == {"status": "ok"}
            assert (await http.get(f"{url}/metrics")).status_code == 404  # Prometheus export is off
            assert await readyz(http, url) == (
                503,
                {"ledger": "unavailable: not opened yet", "temporal": "ok", "workers": "not started yet"},
            )

            state.ledger = ledger
            state.workers = [worker]
            run = asyncio.create_task(worker.run())
            for _ in range(100):
                if (await readyz(http, url))[0] == 200:
                    break
                await asyncio.sleep(0.05)
            assert await readyz(http, url) == (200, {"ledger": "ok", "temporal": "ok", "workers": "ok"})

            unreachable = Ledger.from_url("postgresql+asyncpg://payouts@127.0.0.1:1/payouts")
            state.ledger = unreachable
            status, checks = await readyz(http, url)
            assert status == 503 and checks["ledger"].startswith("unavailable: ") and checks["workers"] == "ok"
            await unreachable.aclose()
            state.ledger = ledger

            state.stopping = True
            assert (await readyz(http, url))[1]["workers"] == "stopping: finishing in-flight activities"
            state.stopping = False
            await worker.shutdown()
            await run
            assert (await readyz(http, url)) == (
                503,
                {"ledger": "ok", "temporal": "ok", "workers": f"not polling: {worker.task_queue}"},
            )
            assert (await http.get(f"{url}/healthz")).status_code == 200
    finally:
        await ledger.aclose()


@pytest.mark.integration
async def test_payouts_worker_answers_healthz_and_readyz(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """The `payouts worker` process: alive at once, ready once its workers poll, and a clean stop."""
    client: Client = dev_env.client
    async with running_stack(client, tmp_path, workers=False) as stack:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, **settings_env(stack.settings), "WORKER_METRICS_PORT": str(port)}
        log = tmp_path / "worker.log"
        with payouts_process("worker", env=env, log=log) as worker:
            async with httpx.AsyncClient(timeout=5) as http:
                answer: tuple[int, dict[str, str]] | None = None
                for _ in range(300):
                    try:
                        answer = await readyz(http, url)
                    except httpx.TransportError:
                        answer = None
                    if answer is not None and answer[0] == 200:
                        break
                    assert worker.poll() is None, log.read_text()
                    await asyncio.sleep(0.1)
                assert answer == (200, {"ledger": "ok", "temporal": "ok", "workers": "ok"}), log.read_text()
                assert (await http.get(f"{url}/healthz")).json() == {"status": "ok"}
            await stop_cleanly(worker, log, timeout=60)
