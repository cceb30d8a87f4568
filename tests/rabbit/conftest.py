"""RabbitMQ tests: the real broker at 127.0.0.1:5672 (scripts/ensure-rabbitmq.sh starts it), queues
of each test's own, deleted afterwards. An unreachable broker fails these tests with a clear message;
set PAYOUTS_SKIP_RABBITMQ=1 to skip them deliberately."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from runtime.settings import RabbitSettings
from tests.rabbit.helpers import RABBIT_URL, Broker, isolated_rabbit_settings, open_broker, queues_of
from tests.stack import Stack, running_stack


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    if os.environ.get("PAYOUTS_SKIP_RABBITMQ") == "1":
        pytest.skip("PAYOUTS_SKIP_RABBITMQ=1")
    try:
        opened = await open_broker()
    except (OSError, ConnectionError) as exc:
        host = RABBIT_URL.rsplit("@", 1)[-1]
        pytest.fail(
            f"RabbitMQ is not reachable at {host} ({type(exc).__name__}). "
            "Start it (`bash scripts/ensure-rabbitmq.sh`), point PAYOUTS_TEST_RABBIT_URL at one, "
            "or set PAYOUTS_SKIP_RABBITMQ=1 to skip these tests explicitly.",
            pytrace=False,
        )
    try:
        yield opened
    finally:
        await opened.connection.close()


@pytest.fixture
async def rabbit(broker: Broker) -> AsyncIterator[RabbitSettings]:
    """RabbitSettings with this test's own queues; the queues go when the test ends."""
    settings = isolated_rabbit_settings()
    try:
        yield settings
    finally:
        await broker.delete(queues_of(settings))


@pytest.fixture
async def stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    """The whole stack (sandbox, webhook, workers) on the Temporal dev server, for the consumer to start payouts on."""
    async with running_stack(dev_env.client, tmp_path, read_timeout=2.0) as s:
        yield s
