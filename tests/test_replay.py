"""Committed histories replay against today's workflow code, with the worker's data converter."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from payouts.temporal_client import data_converter
from tests.stack import stack_crypto
from workers.registry import WORKFLOWS

HISTORIES = Path(__file__).parent / "histories"


@pytest.mark.parametrize("name", ["happy_path", "manual_review"])
async def test_committed_history_replays(name: str) -> None:
    text = (HISTORIES / f"{name}.json").read_text()
    history = WorkflowHistory.from_json(f"replay-{name}", text)
    assert len(history.events) > 10  # a real history, not an empty file

    result = await Replayer(workflows=list(WORKFLOWS), data_converter=data_converter(stack_crypto())).replay_workflow(
        history, raise_on_replay_failure=False
    )

    assert result.replay_failure is None, result.replay_failure
