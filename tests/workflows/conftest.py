"""A payout stack on the time-skipping server (the `env` fixture of tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from runtime.settings import PayoutSettings
from tests.stack import Stack, running_stack

CALLBACK_TIMEOUT = 3600
BACKOFF = 300
REMINDER = 4 * 3600


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
