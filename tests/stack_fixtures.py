"""The whole stack on a time-skipping test server of its own, with the payload codec on and the
sandbox signing its callbacks as the webhook expects: the fixtures of tests/webhook, tests/payouts
and tests/security (their conftest files import them; fixtures are found by name)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.stack import Stack, running_stack


@pytest.fixture(scope="session")
def env(isolated_env: WorkflowEnvironment) -> WorkflowEnvironment:
    """The isolated server (tests/conftest.py): these tests leave payouts waiting in manual review, and
    their timers would hold the shared server's clock for the virtual-time tests that follow."""
    return isolated_env


@pytest.fixture
async def stack(env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(env.client, tmp_path, read_timeout=1.0) as s:
        yield s


@pytest.fixture(scope="module")
async def shared_stack(env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """One stack for a module of tests that each leave no trace (hostile-input corpora). No workers:
    the notification task queue is shared, and a corpus must not need them (nothing may start)."""
    async with running_stack(env.client, tmp_path_factory.mktemp("stack"), read_timeout=1.0, workers=False) as s:
        yield s
