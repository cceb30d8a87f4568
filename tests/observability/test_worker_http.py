"""The worker's own HTTP server: `/metrics` in the Prometheus text format, and a port already taken
is a readable start error, not a traceback."""

from __future__ import annotations

import httpx
import pytest

from payouts import metrics
from payouts.settings import ConfigError, Settings, WorkerSettings
from tests.metrics import Exposition
from workers.http import start_worker_http


async def test_metrics_are_served_and_a_taken_port_is_named() -> None:
    settings = Settings(env="dev", worker=WorkerSettings(metrics_port=0))
    runner, port = await start_worker_http(settings)
    try:
        async with httpx.AsyncClient() as http:
            before = Exposition.parse((await http.get(f"http://127.0.0.1:{port}/metrics")).text)
            metrics.record_portmone_request("bills.create")
            response = await http.get(f"http://127.0.0.1:{port}/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        after = Exposition.parse(response.text)
        moved = after.value("portmone_request_total", method="bills.create") - before.value(
            "portmone_request_total", method="bills.create"
        )
        assert moved == 1

        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}.*WORKER_METRICS_PORT"):
            await start_worker_http(settings, port=port)
    finally:
        await runner.cleanup()
