"""The Temporal floor the benchmarks compare with: workflows of a payout's shape that do nothing else.

`BaselinePayout` runs one activity (no I/O) and waits for one signal, as a payout runs bills.create and
waits for Portmone's callback; `BaselineWaiting` only waits for its signal (the bare webhook's target).
They run on their own task queue, in `python -m bench.baseline_worker` processes, on the same server in
the same benchmark run as the payouts, so a ratio between the two measures our cost, not the machine's.
Kept out of `__main__` modules: the workflow sandbox re-imports the module that defines a workflow.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

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
