"""What an operator reads of a failure without the codec: the `temporal` CLI against the dev server.

Our own failures (a Portmone refusal) and update refusals are readable in the raw history and in
`describe`, with no phone number and no Portmone password anywhere; a library's exception (a SQLAlchemy
error, which echoes the SQL) stays encrypted, and small enough that the server keeps it."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from temporalio.client import WorkflowHandle

from console.tools import temporal_cli
from payouts import failures
from payouts.status import PayoutStatus as S
from runtime.codec import ENCODING
from tests.ops.conftest import TemporalUi, ops_policy
from tests.security.test_secret_hygiene import PHONE_FORMS
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.integration

PASSWORD = "failure-text-test-portmone-password-7c2d"
WAIT = 30.0


@pytest.fixture
async def stack(temporal_ui: TemporalUi, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(
        temporal_ui.client, tmp_path, read_timeout=2.0, payout=ops_policy(), portmone_password=PASSWORD
    ) as s:
        yield s


async def cli(stack: Stack, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The `temporal` command as an operator runs it: no codec, no data converter."""
    argv = [temporal_cli(), *args, "--address", stack.settings.temporal.address]
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=60)
    if check:
        assert done.returncode == 0, done.stderr
    return done


async def raw_json(stack: Stack, *args: str) -> tuple[str, Any]:
    done = await cli(stack, *args, "--output", "json")
    return done.stdout, json.loads(done.stdout)


def no_personal_data(text: str) -> list[str]:
    return [needle for needle in (*PHONE_FORMS, PASSWORD) if needle in text]


async def test_a_portmone_refusal_and_update_refusals_are_readable_without_the_codec(stack: Stack) -> None:
    await stack.faults({"fail_codes": {"20": 1.0}})
    handle = await stack.submit()
    view = await stack.wait_status(handle, {S.MANUAL_REVIEW})
    assert view.escalation_reason == "permanent_error:20"

    # The refused bills.create, as `temporal workflow show` prints it.
    text, history = await raw_json(stack, "workflow", "show", "--workflow-id", handle.id)
    [failed] = [e for e in history["events"] if "activityTaskFailedEventAttributes" in e]
    failure = failed["activityTaskFailedEventAttributes"]["failure"]
    assert failure["applicationFailureInfo"]["type"] == failures.PERMANENT
    assert failure["message"].startswith("Portmone refused bills.create: 20")
    assert "Encoded failure" not in text
    assert "stackTrace" not in failure and "encodedAttributes" not in failure
    assert len(failure["message"]) <= 300
    # Its details (the error code) are still payloads, and encrypted like every payload.
    [detail] = failure["applicationFailureInfo"]["details"]["payloads"]
    assert base64.b64decode(detail["metadata"]["encoding"]) == ENCODING

    # Update refusals, as `temporal workflow update execute` prints them: the validator's words.
    refusals = {
        '{"operator": "", "reason": ""}': "missing: operator, reason",
        '{"operator": "olena", "reason": "  "}': "missing: reason",
        '{"operatr": "olena", "reason": "wrong key"}': "operatr: Extra inputs are not permitted",
    }
    for data, expected in refusals.items():
        done = await cli(
            stack, "workflow", "update", "execute", "--workflow-id", handle.id, "--name", "cancel", "--input", data,
            check=False,
        )
        assert done.returncode != 0, data
        assert expected in done.stderr + done.stdout, (data, done.stderr)
        assert "Encoded failure" not in done.stderr + done.stdout

    described, _ = await raw_json(stack, "workflow", "describe", "--workflow-id", handle.id)
    assert (await stack.wait_status(handle, {S.MANUAL_REVIEW})).status == S.MANUAL_REVIEW
    assert no_personal_data(text) == []
    assert no_personal_data(described) == []


async def test_a_library_exception_stays_encrypted_and_small_enough_for_describe(stack: Stack) -> None:
    # The ledger loses its attempt log: bills.create cannot record its attempt, sends nothing, and fails
    # with our readable type; the cause is LedgerUnavailable, caused by SQLAlchemy's error, whose
    # message repeats the SQL and its parameters.
    async with stack.ledger.engine.begin() as conn:
        await conn.execute(sa.text("ALTER TABLE bill_attempts RENAME TO bill_attempts_gone"))
    handle = await stack.submit()
    failed = await failed_activity(stack, handle)

    assert failed["applicationFailureInfo"]["type"] == failures.ATTEMPT_NOT_RECORDED
    assert failed["message"] == "bills.create not sent: the ledger could not record the attempt"
    library = failed["cause"]
    assert library["message"] == "Encoded failure" and "encodedAttributes" in library, library
    assert library["applicationFailureInfo"]["type"] == "LedgerUnavailable"
    assert library["cause"]["applicationFailureInfo"]["type"] == "OperationalError"
    assert library["cause"]["message"] == "Encoded failure"
    described = json.dumps(failed)
    assert "no such table" not in described and "[SQL" not in described and "[parameters" not in described
    assert await stack.creates() == []  # nothing reached Portmone

    # With the codec (the Web UI's codec server, `payouts ops`), the message and the innermost frames are there.
    history = await handle.fetch_history()
    [event] = [e for e in history.events if e.HasField("activity_task_failed_event_attributes")][:1]
    raw = event.activity_task_failed_event_attributes.failure
    assert raw.ByteSize() < 4096  # what the server keeps of a failure in describe and the Web UI
    decoded = await stack.client.data_converter.decode_failure(raw)
    ledger_error = decoded.__cause__
    assert ledger_error is not None and "no such table: bill_attempts" in str(ledger_error)
    assert ledger_error.__cause__ is not None and "[SQL: SELECT" in str(ledger_error.__cause__)


async def failed_activity(stack: Stack, handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    """The first failed activity's failure, from `temporal workflow show` (the server's JSON)."""
    async with asyncio.timeout(WAIT):
        while True:
            _, shown = await raw_json(stack, "workflow", "show", "--workflow-id", handle.id)
            for event in shown.get("events", []):
                attributes = event.get("activityTaskFailedEventAttributes")
                if attributes:
                    return dict(attributes["failure"])
            await asyncio.sleep(0.5)
