"""What each kind of history event a payout adds costs Temporal (and the worker), measured one kind at a
time on the same dev server in one run.

    .venv/bin/python -m bench.temporal_costs [--workflows N] [--concurrency C]

`ShapedPayout` (bench/baseline.py) is the baseline workflow (one signal 0.2 s after the start, then one
activity) plus, per variant, what a payout adds: local activities (a payout's ledger steps: a marker event
each), search-attribute upserts (a payout's status and bill id for the Web UI), and the callback awaited
with a timeout (a timer started and cancelled), and payloads of a payout's size (its input, the bill's
request and answer, its result: about 2 KB each, encrypted). For each variant: history events, and the CPU per
workflow of the dev server and of the worker process (`bench.baseline_worker`, the SDK's defaults, no
codec), beside the plain baseline's in the same run. Prints figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from temporalio.client import Client

from bench.baseline import SIGNAL, Shape, ShapedPayout
from bench.harness import CpuMeter, baseline_workers, bounded, machine, temporal_server_pid
from tests.temporal_envs import dev_server

CALLBACK_DELAY = 0.2
# The payout's happy path: two ledger steps as local activities (reserve, PAID), two upserts
# (AWAITING_CALLBACK with the bill id, PAID), the callback awaited with a timeout.
VARIANTS: dict[str, Shape] = {
    "baseline": Shape(),
    "+ 2 local activities": Shape(local_activities=2),
    "+ 2 search-attribute upserts": Shape(upserts=2),
    "+ a timer (started, cancelled)": Shape(timer=True),
    "+ 2 KB payloads": Shape(padding=2048),
    "payout-shaped (all four)": Shape(local_activities=2, upserts=2, timer=True, padding=2048),
}


async def one_variant(client: Client, queue: str, shape: Shape, n: int, concurrency: int) -> tuple[float, int]:
    """Runs `n` workflows of this shape; returns the wall time and the median history length."""
    prefix = f"shaped-{uuid.uuid4().hex[:8]}"

    async def one(i: int) -> None:
        handle = await client.start_workflow(ShapedPayout.run, shape, id=f"{prefix}-{i:06d}", task_queue=queue)
        await asyncio.sleep(CALLBACK_DELAY)
        await handle.signal(SIGNAL)
        await handle.result()

    start = time.perf_counter()
    await bounded(n, concurrency, one)
    wall = time.perf_counter() - start

    async def length(i: int) -> int:
        return len((await client.get_workflow_handle(f"{prefix}-{i:06d}").fetch_history()).events)

    return wall, int(statistics.median(await bounded(min(n, 20), 20, length)))


async def run(args: argparse.Namespace) -> None:
    async with dev_server() as env:
        address = env.client.service_client.config.target_host
        client = await Client.connect(address)
        queue = f"shaped-{uuid.uuid4().hex[:8]}"
        with tempfile.TemporaryDirectory() as tmp:
            async with baseline_workers(address, 1, queue, Path(tmp)) as pids:
                await one_variant(client, queue, VARIANTS["payout-shaped (all four)"], 20, 20)  # warm-up
                rows = []
                for name, shape in VARIANTS.items():
                    cpu = CpuMeter({"Temporal": [temporal_server_pid()], "worker": pids})
                    cpu.start()
                    wall, events = await one_variant(client, queue, shape, args.workflows, args.concurrency)
                    cpu.stop()
                    rows.append((name, events, args.workflows / wall, cpu.used))
    n = args.workflows
    base_events, base_temporal = rows[0][1], rows[0][3]["Temporal"] / n
    print(f"{n} workflows per variant, concurrency {args.concurrency}, one worker process; CPU per workflow:")
    for name, events, rate, used in rows:
        temporal, worker = used["Temporal"] / n * 1000, used["worker"] / n * 1000
        print(f"  {name:30s} {events:3d} events ({events - base_events:+d}), {rate:5.1f} workflows/s, "
              f"Temporal {temporal:5.1f} ms ({temporal - base_temporal * 1000:+5.1f}), worker {worker:5.1f} ms")
    print(f"machine: {machine()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=20)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
