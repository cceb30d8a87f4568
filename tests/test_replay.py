"""Committed histories replay against today's workflow code, with the worker's data converter: in the
full sandbox (every workflows module loaded per payout, each call checked) and with the worker's own
runner (its mechanics modules shared across payouts)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from runtime.temporal_client import data_converter
from tests.stack import stack_crypto
from workers.registry import WORKFLOWS, workflow_runner

HISTORIES = Path(__file__).parent / "histories"
# Every committed history: a folder per workflow type, with a history of each shape a payout can take.
NAMES = sorted(str(p.relative_to(HISTORIES).with_suffix("")) for p in HISTORIES.rglob("*.json"))


def test_every_shape_has_a_history() -> None:
    from tests.histories.record import FOLDER, ON_DEV_SERVER, SHAPES, WITH_SHORT_RUNS

    recorded = {p.stem for p in FOLDER.glob("*.json")}
    assert recorded == set(SHAPES) | set(WITH_SHORT_RUNS) | set(ON_DEV_SERVER)


RUNNERS: dict[str, Callable[[], WorkflowRunner]] = {
    "full sandbox": SandboxedWorkflowRunner,
    "the worker's runner": workflow_runner,
}


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("name", NAMES)
async def test_committed_history_replays(name: str, runner: str) -> None:
    text = (HISTORIES / f"{name}.json").read_text()
    history = WorkflowHistory.from_json(f"replay-{name}", text)
    assert len(history.events) > 10  # a real history, not an empty file

    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=data_converter(stack_crypto()),
                        workflow_runner=RUNNERS[runner]())  # fmt: skip
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)

    assert result.replay_failure is None, result.replay_failure


def test_a_recorded_happy_path_stays_within_the_history_bound() -> None:
    """≤ 30 events for a happy-path payout (reserve, bills.create, the callback, the top-up, PAID),
    recorded through the full stack; a change that adds events fails here before it ships."""
    from tests.histories.record import FOLDER

    history = WorkflowHistory.from_json("happy", (FOLDER / "happy_path.json").read_text())
    assert history.events[0].workflow_execution_started_event_attributes.workflow_type.name == "ReceiptPayout"
    assert len(history.events) <= 30, len(history.events)
