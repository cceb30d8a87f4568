"""A payout stack on the Temporal dev server (the `dev_env` fixture of tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from runtime.settings import PayoutSettings
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.integration


def short_policy(**overrides: int) -> PayoutSettings:
    values = {
        "callback_timeout_seconds": 30,
        "retry_backoff_seconds": 1,
        "max_bill_rounds": 2,
        "manual_reminder_seconds": 3600,
        # Above the stack's Portmone budget (connect 2 + write 2 + read 2) plus the 10 s ledger margin.
        "bill_attempt_timeout_seconds": 20,
    }
    values.update(overrides)
    return PayoutSettings(**values)


@pytest.fixture
async def stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(dev_env.client, tmp_path, read_timeout=2.0, telecom=True, payout=short_policy()) as s:
        yield s
