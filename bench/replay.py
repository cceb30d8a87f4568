"""What loading a payout costs a worker: the recorded payout histories replayed, as a worker replays a
payout that dropped out of its sticky cache, under three workflow runners in the same run:

- the full sandbox (the SDK's default: every `workflows` module imported again for each payout);
- the worker's runner (`workers.registry.workflow_runner`: the mechanics modules shared);
- no sandbox at all, the floor (never run in production: nothing would check the workflow's calls).

    .venv/bin/python -m bench.replay [--rounds 7] [--repeat 20]

Each round replays every history of tests/histories/ReceiptPayout `--repeat` times under each runner in
turn, so the runners share the machine's moments; the figures are each runner's median over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from bench.harness import machine
from runtime.temporal_client import data_converter
from tests.stack import stack_crypto
from workers.registry import WORKFLOWS, workflow_runner

HISTORIES = Path(__file__).parent.parent / "tests" / "histories" / "ReceiptPayout"
RUNNERS: dict[str, Callable[[], WorkflowRunner]] = {
    "full sandbox (the SDK's default)": SandboxedWorkflowRunner,
    "the worker's runner": workflow_runner,
    "no sandbox (the floor)": UnsandboxedWorkflowRunner,
}


async def replay_all(replayer: Replayer, histories: list[WorkflowHistory], repeat: int) -> float:
    """Seconds per replayed history."""

    async def each() -> AsyncIterator[WorkflowHistory]:
        for i in range(repeat):
            for h in histories:
                yield WorkflowHistory(f"{h.workflow_id}-{i}", h.events)

    started = time.perf_counter()
    async with replayer.workflow_replay_iterator(each()) as results:
        async for result in results:
            if result.replay_failure is not None:
                raise result.replay_failure
    return (time.perf_counter() - started) / (repeat * len(histories))


async def run(args: argparse.Namespace) -> None:
    histories = [WorkflowHistory.from_json(p.stem, p.read_text()) for p in sorted(HISTORIES.glob("*.json"))]
    converter = data_converter(stack_crypto())
    replayers = {name: Replayer(workflows=list(WORKFLOWS), data_converter=converter, workflow_runner=make())
                 for name, make in RUNNERS.items()}  # fmt: skip
    for replayer in replayers.values():  # warm: imports, bytecode
        await replay_all(replayer, histories, 1)
    seconds: dict[str, list[float]] = {name: [] for name in replayers}
    for _ in range(args.rounds):
        for name, replayer in replayers.items():
            seconds[name].append(await replay_all(replayer, histories, args.repeat))

    events = statistics.mean(len(h.events) for h in histories)
    print(f"{len(histories)} recorded payout histories ({events:.0f} events on average), "
          f"each replayed {args.repeat} times per round, {args.rounds} rounds")  # fmt: skip
    full = statistics.median(seconds[next(iter(RUNNERS))])
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"{name}: {median * 1000:.1f} ms per payout loaded (min {min(values) * 1000:.1f}, "
              f"max {max(values) * 1000:.1f}), {median / full:.0%} of the full sandbox's")  # fmt: skip
    print(f"machine: {machine()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=20, help="replays of each history per runner per round")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
