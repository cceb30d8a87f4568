"""Session-wide servers shared by every test folder that needs one: Temporal (both kinds) and the
PostgreSQL admin connection that makes throwaway databases; the process's telemetry.

PostgreSQL: `PAYOUTS_TEST_POSTGRES_URL` (default the local server's `test` database, trust auth) is used
only to CREATE fresh `payouts_test_<random>` databases and DROP them at the end of the session. An
unreachable server fails the postgres tests with a clear message; set PAYOUTS_SKIP_POSTGRES=1 to skip.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from temporalio.testing import WorkflowEnvironment

from runtime import telemetry
from runtime.settings import TelemetrySettings
from tests.ledger.helpers import PG_ADMIN_URL, PgAdmin
from tests.temporal_envs import dev_server, time_skipping_server

# The Temporal connection reads the `temporal` CLI's profile file (runtime.temporal_profile): the
# tests, and the processes they start, never pick up the developer's own (an empty file instead).
os.environ.setdefault("TEMPORAL_CONFIG_FILE", os.devnull)


@pytest.fixture(scope="session", autouse=True)
def process_telemetry() -> None:
    """The test process exports its metrics as the service's processes do (Prometheus, no traces)."""
    telemetry.setup(TelemetrySettings(metrics_exporters="prometheus", traces_exporter="none"), "payouts-tests")


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_server() as environment:
        yield environment


@pytest.fixture(scope="session")
async def isolated_env() -> AsyncIterator[WorkflowEnvironment]:
    """A second time-skipping server, shared by tests/webhook, tests/payouts and tests/security
    (tests/stack_fixtures.py): they leave payouts waiting in manual review, whose timers would hold
    the first server's clock."""
    async with time_skipping_server() as environment:
        yield environment


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server() as environment:
        yield environment


@pytest.fixture(scope="session")
async def pg_admin() -> AsyncIterator[PgAdmin]:
    if os.environ.get("PAYOUTS_SKIP_POSTGRES") == "1":
        pytest.skip("PAYOUTS_SKIP_POSTGRES=1")
    engine = create_async_engine(
        PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"timeout": 5}
    )
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except (OSError, TimeoutError, sa.exc.SQLAlchemyError) as exc:
        await engine.dispose()
        pytest.fail(
            f"PostgreSQL is not reachable at {make_url(PG_ADMIN_URL)!r} ({type(exc).__name__}: {exc}). "
            "Start it (check with `pg_isready -h 127.0.0.1`), point PAYOUTS_TEST_POSTGRES_URL at one, "
            "or set PAYOUTS_SKIP_POSTGRES=1 to skip the postgres tests explicitly.",
            pytrace=False,
        )
    admin = PgAdmin(engine)
    try:
        yield admin
    finally:
        await admin.drop_all()
        await engine.dispose()
