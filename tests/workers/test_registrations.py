"""Every activity a workflow calls is registered on the task queue it is called on, once.

Workflows call activities by the kernel's names (`payouts.names.ActivityName`), never by importing
them, so nothing but this test ties a call to a registration: a name no worker registers, or one
registered on another queue, would otherwise be found only when a payout waits for it. The calls are
read from the workflows themselves: `workflows.payout_calls` is run with the workflow API's
`start_activity` / `start_local_activity` recording what they are asked; the scheduled workflows are
read from their source. The registrations are read from the real workers `build_workers` builds.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from payouts.names import ActivityName
from payouts.status import PayoutStatus
from runtime.settings import WorkerSettings
from tests.stack import stack_settings
from workers.deps import activity_set
from workers.registry import build_workers
from workflows import payout_calls
from workflows.payout_calls import PORTMONE_TASK_QUEUE

WORKFLOWS = Path(payout_calls.__file__).parent
LOCAL = "local activity (the workflow's own worker)"
WORKFLOW_QUEUE = "the workflow's own task queue"
START_FUNCTIONS = {"start_activity", "execute_activity", "start_local_activity", "execute_local_activity"}
# What the stub inputs need for payout_calls to build its summaries.
STUB_FIELDS: dict[str, Any] = {"to_status": PayoutStatus.PAID, "round_no": 1, "action": "retry"}


def _stub(annotation: Any) -> Any:
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation.model_construct(**{k: v for k, v in STUB_FIELDS.items() if k in annotation.model_fields})
    if annotation is int:
        return 90
    return "payout-stub"


class _Asked(Exception):
    """Raised by the recording start functions: the call was recorded, nothing more is needed of it."""


def payout_workflow_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Activity name -> where the payout workflow runs it, from every call builder in payout_calls (a
    ledger step is recorded as the local activity it starts as)."""
    calls: dict[str, str] = {}

    def started(name: str, *_: Any, task_queue: str | None = None, **__: Any) -> None:
        calls.setdefault(name, task_queue or WORKFLOW_QUEUE)
        raise _Asked

    def started_local(name: str, *_: Any, **__: Any) -> None:
        calls.setdefault(name, LOCAL)
        raise _Asked

    monkeypatch.setattr(workflow, "start_activity", started)
    monkeypatch.setattr(workflow, "start_local_activity", started_local)
    def builds_a_call(fn: Any) -> bool:
        returns = str(inspect.signature(fn).return_annotation)
        return fn.__module__ == payout_calls.__name__ and ("Handle" in returns or "Awaitable" in returns)

    builders = [fn for name, fn in inspect.getmembers(payout_calls, inspect.isfunction)
                if not name.startswith("_") and builds_a_call(fn)]  # fmt: skip
    assert len(builders) >= 8, builders
    for fn in builders:
        hints = typing.get_type_hints(fn)
        params = [p for p in inspect.signature(fn).parameters if p != "return"]
        with contextlib.suppress(_Asked):
            call = fn(*[_stub(hints[p]) for p in params])
            if inspect.iscoroutine(call):
                try:
                    call.send(None)
                finally:
                    call.close()
    return calls


def scheduled_workflow_calls() -> Iterator[tuple[str, str, str]]:
    """(file, activity name, queue) for every activity call written in workflows/ outside payout_calls."""
    for path in sorted(WORKFLOWS.glob("*.py")):
        if path.name == "payout_calls.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in START_FUNCTIONS or not node.args:
                continue
            first = node.args[0]
            name = ast.unparse(first)
            if isinstance(first, ast.Attribute) and ast.unparse(first.value) == "ActivityName":
                name = ActivityName[first.attr].value
            queue = LOCAL if "local" in node.func.attr else WORKFLOW_QUEUE
            if any(k.arg == "task_queue" for k in node.keywords):
                queue = ast.unparse(next(k.value for k in node.keywords if k.arg == "task_queue"))
            yield path.name, name, queue


def test_workflows_name_activities_only_through_the_kernel() -> None:
    """No string literal (a typo waiting to happen) where an activity name goes."""
    literal = [(f, n) for f, n, _ in scheduled_workflow_calls() if n not in set(ActivityName)]
    source = (WORKFLOWS / "payout_calls.py").read_text()
    assert literal == []
    assert not [
        node for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in START_FUNCTIONS
        and node.args and isinstance(node.args[0], ast.Constant)
    ]  # fmt: skip


async def test_every_call_is_registered_on_its_queue_once(
    env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = stack_settings(tmp_path, sandbox_port=9, webhook_port=9, internal_port=10,
                              task_queue="payouts-registrations")
    tuning = WorkerSettings(portmone_requests_per_second=7.0)
    # A client of its own: workers built on it are registered with it (never run), and would keep the
    # session client from building workers for the same task queues in later tests.
    client = await Client.connect(env.client.service_client.config.target_host)
    async with activity_set(settings) as activities:
        workers = build_workers(client, activities, task_queue="payouts-registrations", tuning=tuning)
    registered: dict[str, list[str]] = {}
    caps: dict[str, float | None] = {}
    for worker in workers:
        config = worker.config()
        queue = config["task_queue"]
        caps[queue] = config.get("max_task_queue_activities_per_second")
        for fn in config.get("activities", []):
            registered.setdefault(activity._Definition.must_from_callable(fn).name, []).append(queue)

    # Each name once, on one worker: a second registration would run it without that worker's limits.
    assert {name: queues for name, queues in registered.items() if len(queues) > 1} == {}
    where = {name: queues[0] for name, queues in registered.items()}

    calls = payout_workflow_calls(monkeypatch)
    calls |= {name: queue for _, name, queue in scheduled_workflow_calls()}
    expected = {
        name: "payouts-registrations" if queue in (LOCAL, WORKFLOW_QUEUE) else queue for name, queue in calls.items()
    }
    assert where == expected  # every call registered where it is called, and nothing registered idle
    assert set(where) == {name.value for name in ActivityName}

    # bills.create runs only on the Portmone queue, whose worker carries the request-rate cap.
    assert where[ActivityName.CREATE_BILL] == PORTMONE_TASK_QUEUE
    assert caps[PORTMONE_TASK_QUEUE] == 7.0
