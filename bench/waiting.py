"""Many payouts parked awaiting their callbacks: the workers' memory, and callback latency at that load.

    .venv/bin/python -m bench.waiting [--payouts 10000] [--workers K] [--sample 200] [--rate 20] [--cache S]
                                      [--worker-env NAME=VALUE ...]

Parks N payouts (the sandbox drops every callback, so each waits in AWAITING_CALLBACK with its bill),
prints each worker's resident memory (now and peak), then sends signed PAYED callbacks for a random
sample of them at a fixed rate and prints callback -> workflow state (as bench.webhook measures it).
With more waiting payouts than the sticky cache holds (WORKER_MAX_CACHED_WORKFLOWS), most callbacks
find their workflow evicted, and it is replayed from its history first. Target: worker RSS <= 300 MB
with 10,000 waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
from pathlib import Path

from bench.harness import bench_stack, machine, park, relay_drained, send_paid_callbacks, signal_to_state, spread
from runtime.settings import WorkerSettings
from tests.temporal_envs import dev_server


async def run(args: argparse.Namespace) -> None:
    worker_env = dict(item.split("=", 1) for item in args.worker_env)
    if args.cache is not None:
        worker_env["WORKER_MAX_CACHED_WORKFLOWS"] = str(args.cache)
    async with dev_server() as env:
        with tempfile.TemporaryDirectory() as tmp:
            async with bench_stack(env.client, Path(tmp), workers=args.workers, ledger=args.ledger,
                                   portmone_rate=1000.0, worker_env=worker_env) as b:  # fmt: skip
                bills = await park(b, "wait", args.payouts, concurrency=args.concurrency)
                drained = await relay_drained(b)
                parked_rss = b.worker_rss_mb()
                sample = dict(random.Random(7).sample(sorted(bills.items()), min(args.sample, len(bills))))
                achieved, answers = await send_paid_callbacks(b, sample, args.rate)
                latencies = await signal_to_state(env.client, b.sent)
                answered = dict(sorted(b.answered.items()))
                after_rss = b.worker_rss_mb()

    default = WorkerSettings.model_fields["max_cached_workflows"].default
    cache = args.cache if args.cache is not None else f"default ({default})"
    print(f"{args.payouts} payouts waiting for their callbacks, {args.workers} worker process(es), "
          f"sticky cache {cache} per worker, ledger {args.ledger}"
          + (f", worker environment {' '.join(args.worker_env)}" if args.worker_env else ""))
    print(f"the relays delivered the parked payouts' events {drained:.0f} s after the last was parked")
    print("worker RSS with all of them parked: " + ", ".join(f"{now:.0f} MiB (peak {peak:.0f})"
                                                              for now, peak in parked_rss))  # fmt: skip
    print(f"{len(sample)} callbacks at {args.rate:g}/s (accepted {achieved:.1f}/s): answers {answered}, "
          f"in {spread(answers)}; {latencies.lines()}")
    print("worker RSS after them: " + ", ".join(f"{now:.0f} MiB (peak {peak:.0f})" for now, peak in after_rss))
    print(f"machine: {machine()}")
    print("target: worker RSS <= 300 MB with 10,000 waiting")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payouts", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=40, help="intake requests in flight while parking")
    parser.add_argument("--sample", type=int, default=200, help="callbacks sent once all are parked")
    parser.add_argument("--rate", type=float, default=20.0, help="callbacks per second")
    parser.add_argument("--cache", type=int, default=None, help="WORKER_MAX_CACHED_WORKFLOWS for the workers")
    parser.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                        help="more environment for the worker processes (MALLOC_ARENA_MAX=2, say)")
    parser.add_argument("--ledger", choices=["postgres", "sqlite"], default="postgres")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
