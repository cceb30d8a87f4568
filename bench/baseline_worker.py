"""A worker process for the baseline workflows (bench/baseline.py), with the SDK's default worker tuning.

    .venv/bin/python -m bench.baseline_worker --address 127.0.0.1:7233 [--task-queue bench-baseline]

Runs until SIGTERM; the benchmarks start and stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from temporalio.client import Client
from temporalio.worker import Worker

from bench.baseline import BASELINE_TASK_QUEUE, BaselinePayout, BaselineWaiting, ShapedPayout, echo, local_work, work


async def serve(address: str, task_queue: str) -> None:
    client = await Client.connect(address)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with Worker(client, task_queue=task_queue, workflows=[BaselinePayout, BaselineWaiting, ShapedPayout],
                      activities=[work, echo, local_work]):
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", default=BASELINE_TASK_QUEUE)
    args = parser.parse_args()
    asyncio.run(serve(args.address, args.task_queue))


if __name__ == "__main__":
    main()
