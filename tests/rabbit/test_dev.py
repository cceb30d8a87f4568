"""`payouts dev` and the queue: it consumes when RabbitMQ answers and says so; otherwise it says the
consumer is skipped and runs the rest."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.service import RPCError

from console.dev import stop_process
from console.publish import encode, good_message, new_run, publish
from payouts.models import PayoutView, payout_workflow_id
from payouts.status import PayoutStatus
from runtime.settings import RabbitSettings
from runtime.temporal_client import data_converter
from tests.cli_helpers import clean_env
from tests.faults import eventually
from tests.rabbit.helpers import Broker, rabbit_env
from tests.stack import free_port, stack_crypto

pytestmark = [pytest.mark.rabbitmq, pytest.mark.integration]


@contextmanager
def payouts_dev(tmp_path: Path, **env: str) -> Iterator[tuple[dict[str, int], Path]]:
    ports = {name: free_port() for name in ("temporal", "ui", "webhook", "sandbox")}
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "console.cli", "dev", "--data-dir", str(tmp_path / ".data"),
             "--temporal-port", str(ports["temporal"]), "--ui-port", str(ports["ui"]),
             "--webhook-port", str(ports["webhook"]), "--sandbox-port", str(ports["sandbox"])],
            env=clean_env(**env), cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
        )
        try:
            yield ports, log
        finally:
            stop_process(proc, 30, signal.SIGINT)


async def banner_line(log: Path, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("  RabbitMQ"):
                return line
        await asyncio.sleep(0.3)
    raise AssertionError(f"no RabbitMQ line in the banner:\n{log.read_text(errors='replace')[-3000:]}")


async def test_payouts_dev_consumes_the_queue_and_says_so(
    rabbit: RabbitSettings, broker: Broker, tmp_path: Path
) -> None:
    with payouts_dev(tmp_path, **rabbit_env(rabbit)) as (ports, log):
        line = await banner_line(log)
        assert f"consuming {rabbit.intake_queue} at amqp://guest:***@127.0.0.1:5672/" in line
        message = good_message(new_run(), 1)
        await publish(rabbit, rabbit.intake_queue, [encode(message)])
        client = await Client.connect(
            f"127.0.0.1:{ports['temporal']}", data_converter=data_converter(stack_crypto())
        )
        handle = client.get_workflow_handle(payout_workflow_id(str(message["receipt_id"])), result_type=PayoutView)

        async def started() -> bool:
            try:
                await handle.describe()
            except RPCError:
                return False
            return True

        await eventually(started, timeout=60)
        result = await asyncio.wait_for(handle.result(), 90)
    assert result.status == PayoutStatus.PAID
    assert "guest:guest" not in log.read_text(errors="replace")


async def test_payouts_dev_says_the_consumer_is_skipped_when_rabbitmq_does_not_answer(tmp_path: Path) -> None:
    closed = free_port()
    with payouts_dev(tmp_path, RABBIT_URL=f"amqp://guest:guest@127.0.0.1:{closed}/") as (_, log):
        line = await banner_line(log)
    assert f"not answering at 127.0.0.1:{closed}: the receipt.accepted consumer is skipped" in line
