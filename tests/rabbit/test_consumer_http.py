"""`payouts consumer` as a process, seen from outside as compose and Prometheus see it: `/healthz`,
`/readyz` (consuming, and Temporal answers) and `/metrics` on RABBIT_METRICS_PORT."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from console.publish import publish
from runtime.settings import RabbitSettings
from tests.cli_helpers import clean_env, payouts, payouts_process, stop_cleanly
from tests.metrics import Exposition
from tests.rabbit.helpers import Broker, rabbit_env
from tests.stack import Stack, free_port, running_stack, settings_env

pytestmark = [pytest.mark.rabbitmq, pytest.mark.integration]


@pytest.fixture
async def bare_stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    """Temporal and a ledger; no workers (the consumer only starts payouts)."""
    async with running_stack(dev_env.client, tmp_path, workers=False) as stack:
        yield stack


def consumer_env(stack: Stack, rabbit: RabbitSettings, port: int) -> dict[str, str]:
    return clean_env(**settings_env(stack.settings), **rabbit_env(rabbit.model_copy(update={"metrics_port": port})))


async def answer(http: httpx.AsyncClient, url: str, wanted: int, log: Path) -> tuple[int, dict[str, str]]:
    """`/readyz` once it answers `wanted` (or what it last answered after 30 s)."""
    last: tuple[int, dict[str, str]] = (0, {})
    for _ in range(300):
        try:
            response = await http.get(f"{url}/readyz")
            body = response.json()
            assert body["ready"] is (response.status_code == 200)
            last = (response.status_code, body["checks"])
        except httpx.TransportError:
            pass
        if last[0] == wanted:
            break
        await asyncio.sleep(0.1)
    assert last[0] == wanted, log.read_text()[-3000:]
    return last


async def test_payouts_consumer_is_healthy_ready_and_scraped(
    bare_stack: Stack, rabbit: RabbitSettings, broker: Broker, tmp_path: Path
) -> None:
    port = free_port()
    url, log = f"http://127.0.0.1:{port}", tmp_path / "consumer.log"
    await publish(rabbit, rabbit.intake_queue, [b"not json", b'{"version": 1, "status": "rejected"}'])
    with payouts_process("consumer", env=consumer_env(bare_stack, rabbit, port), log=log) as consumer:
        async with httpx.AsyncClient(timeout=5) as http:
            assert await answer(http, url, 200, log) == (200, {"rabbitmq": "ok", "temporal": "ok"})
            assert (await http.get(f"{url}/healthz")).json() == {"status": "ok"}

            async def scraped() -> Exposition:
                return Exposition.parse((await http.get(f"{url}/metrics")).text)

            for _ in range(100):
                exposition = await scraped()
                if exposition.value("payout_queue_messages_total") >= 2:
                    break
                await asyncio.sleep(0.1)
            assert exposition.value("payout_queue_dead_letters_total", reason="invalid_json") == 1
            assert exposition.value("payout_queue_messages_total", outcome="ignored") == 1
        await stop_cleanly(consumer, log, timeout=60)
    assert f"consumer health and metrics on http://127.0.0.1:{port}" in log.read_text()


async def test_a_consumer_without_its_broker_is_alive_but_not_ready(
    bare_stack: Stack, rabbit: RabbitSettings, tmp_path: Path
) -> None:
    nowhere = rabbit.model_copy(update={"url": SecretStr(f"amqp://guest:guest@127.0.0.1:{free_port()}/")})
    port = free_port()
    url, log = f"http://127.0.0.1:{port}", tmp_path / "consumer.log"
    with payouts_process("consumer", env=consumer_env(bare_stack, nowhere, port), log=log) as consumer:
        async with httpx.AsyncClient(timeout=5) as http:
            _, checks = await answer(http, url, 503, log)
            assert checks == {"rabbitmq": "not consuming: connecting to RabbitMQ", "temporal": "ok"}
            assert (await http.get(f"{url}/healthz")).status_code == 200
        await stop_cleanly(consumer, log, timeout=60)


async def test_a_taken_port_is_a_readable_start_error(
    bare_stack: Stack, rabbit: RabbitSettings, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await asyncio.to_thread(
            payouts, "consumer", env=consumer_env(bare_stack, rabbit, port), cwd=tmp_path, timeout=60
        )
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"127.0.0.1:{port}" in result.stderr and "RABBIT_METRICS_PORT" in result.stderr
    assert "Traceback" not in result.stderr
