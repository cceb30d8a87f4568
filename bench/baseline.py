"""The Temporal floor the benchmarks compare with: workflows of a payout's shape that do nothing else.

`BaselinePayout` runs one activity (no I/O) and waits for one signal, as a payout runs bills.create and
waits for Portmone's callback; `BaselineWaiting` only waits for its signal (the bare webhook's target).
They run on their own task queue, in `python -m bench.baseline_worker` processes, on the same server in
the same benchmark run as the payouts, so a ratio between the two measures our cost, not the machine's.
Kept out of `__main__` modules: the workflow sandbox re-imports the module that defines a workflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from payouts.search_attributes import PAYOUT_STATUS

BASELINE_TASK_QUEUE = "bench-baseline"
SIGNAL = "callback"


@activity.defn(name="baseline.work")
async def work(n: int) -> int:
    return n + 1


@workflow.defn(name="BaselinePayout")
class BaselinePayout:
    def __init__(self) -> None:
        self._signalled = False

    @workflow.run
    async def run(self, n: int) -> int:
        result: int = await workflow.execute_activity(work, n, start_to_close_timeout=timedelta(seconds=30))
        await workflow.wait_condition(lambda: self._signalled)
        return result

    @workflow.signal(name=SIGNAL)
    def callback(self) -> None:
        self._signalled = True


@workflow.defn(name="BaselineWaiting")
class BaselineWaiting:
    def __init__(self) -> None:
        self._signalled = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self._signalled)

    @workflow.signal(name=SIGNAL)
    def callback(self) -> None:
        self._signalled = True


@dataclass(frozen=True)
class Shape:
    """What a `ShapedPayout` asks of Temporal beside the baseline's activity and signal."""

    local_activities: int = 0
    upserts: int = 0  # search-attribute upserts, one event each
    timer: bool = False  # the signal awaited with a timeout: a timer started and cancelled
    padding: int = 0  # bytes added to the activity's input and result and to the workflow's result


@activity.defn(name="baseline.echo")
async def echo(text: str) -> str:
    return text


@activity.defn(name="baseline.local_work")
async def local_work(n: int) -> int:
    return n + 1


@workflow.defn(name="ShapedPayout")
class ShapedPayout:
    """`BaselinePayout` plus a payout's other kinds of history events (bench.temporal_costs)."""

    def __init__(self) -> None:
        self._signalled = False

    @workflow.run
    async def run(self, shape: Shape) -> str:
        n = 0
        for _ in range(shape.local_activities):
            n = await workflow.execute_local_activity(local_work, n, start_to_close_timeout=timedelta(seconds=10))
        for i in range(shape.upserts):
            workflow.upsert_search_attributes([PAYOUT_STATUS.value_set(f"STEP_{i}")])
        # The signal is awaited first (the driver sends it 0.2 s after the start), so that each variant's
        # history has the same events whatever the machine's load; then the activity.
        await workflow.wait_condition(lambda: self._signalled, timeout=timedelta(hours=1) if shape.timer else None)
        text = f"{n}:" + "x" * shape.padding
        return await workflow.execute_activity(echo, text, start_to_close_timeout=timedelta(seconds=30))

    @workflow.signal(name=SIGNAL)
    def callback(self) -> None:
        self._signalled = True
