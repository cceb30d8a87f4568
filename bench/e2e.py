"""End-to-end payouts on the real Temporal dev server, then the Temporal floor on the same server.

    .venv/bin/python -m bench.e2e [--receipts N] [--workers K] [--concurrency C] [--cache S] [--ledger postgres|sqlite]

Part 1, the payouts: the test harness's sandbox (callbacks 0.2 s after the bill) and webhook in this
process, K `payouts worker` processes, a ledger of its own (a throwaway PostgreSQL database by default).
N receipts go in through the webhook, C at a time; prints payouts/s, intake -> PAID p50/p95/p99, history
events per payout (the bound is 30), history events/s, the workers' peak RSS, and the ledger's
transactions, rows, statements and PostgreSQL CPU per payout (bench/pg_meter.py).

Part 2, the baseline, in the same run on the same server: K worker processes of `BaselinePayout`
(bench/baseline.py: one activity, one signal 0.2 s after the start, no I/O), N workflows, C at a time;
prints its events/s and ours as a ratio of it (the target is at least 90 %).

Prints figures; asserts only that every payout ended PAID. A few warm-up payouts (and baseline
workflows) run first and are not counted: worker start-up is not what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client

from bench.baseline import BaselinePayout
from bench.harness import (
    BenchStack,
    CpuMeter,
    baseline_workers,
    bench_stack,
    bounded,
    final_status,
    machine,
    receipt_body,
    relay_drained,
    spread,
    temporal_server_pid,
)
from bench.pg_meter import PgMeter
from payouts.models import payout_workflow_id
from payouts.status import PayoutStatus
from tests.temporal_envs import dev_server

CALLBACK_DELAY = 0.2  # the sandbox's, and the baseline driver's before its signal


@dataclass
class Run:
    wall: float
    events: list[int]
    latencies: list[float]

    @property
    def events_per_second(self) -> float:
        return sum(self.events) / self.wall


async def payouts(b: BenchStack, prefix: str, n: int, concurrency: int) -> tuple[Run, dict[PayoutStatus, int]]:
    intake: list[float] = []
    settle: list[float] = []
    statuses: dict[PayoutStatus, int] = {}

    async def one(i: int) -> None:
        body = receipt_body(b, prefix, i)
        t0 = time.perf_counter()
        resp = await b.stack.post_receipt(body)
        intake.append(time.perf_counter() - t0)
        assert resp.status_code == 202, resp.text
        status = await final_status(b.stack.client, payout_workflow_id(body["receipt_id"]))
        settle.append(time.perf_counter() - t0)
        statuses[status] = statuses.get(status, 0) + 1

    start = time.perf_counter()
    await bounded(n, concurrency, one)
    wall = time.perf_counter() - start
    if intake:
        print(f"  intake POST -> 202: {spread(intake)}")
    ids = [payout_workflow_id(f"{prefix}-{i:06d}") for i in range(n)]
    events = await bounded(n, 20, lambda i: history_length(b.stack.client, ids[i]))
    return Run(wall, events, settle), statuses


async def history_length(client: Client, workflow_id: str) -> int:
    return len((await client.get_workflow_handle(workflow_id).fetch_history()).events)


async def baseline(client: Client, task_queue: str, prefix: str, n: int, concurrency: int) -> Run:
    latencies: list[float] = []

    async def one(i: int) -> None:
        t0 = time.perf_counter()
        handle = await client.start_workflow(BaselinePayout.run, i, id=f"{prefix}-{i:06d}", task_queue=task_queue)
        await asyncio.sleep(CALLBACK_DELAY)
        await handle.signal(BaselinePayout.callback)
        await handle.result()
        latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await bounded(n, concurrency, one)
    wall = time.perf_counter() - start
    events = await bounded(n, 20, lambda i: history_length(client, f"{prefix}-{i:06d}"))
    return Run(wall, events, latencies)


async def run(args: argparse.Namespace) -> None:
    n, k, c = args.receipts, args.workers, args.concurrency
    warmup = max(2 * k, 4)
    async with dev_server() as env:
        address = env.client.service_client.config.target_host
        with tempfile.TemporaryDirectory() as tmp:
            worker_env = {"WORKER_MAX_CACHED_WORKFLOWS": str(args.cache)} if args.cache is not None else None
            wrapper = [args.py_spy, "record", "-r", "50", "-f", "raw", "-o", f"{args.profile_workers}-{{name}}.txt",
                       "--"] if args.profile_workers else []  # fmt: skip
            async with bench_stack(env.client, Path(tmp), workers=k, ledger=args.ledger,
                                   portmone_rate=args.portmone_rate, worker_env=worker_env,
                                   worker_wrapper=wrapper) as b:  # fmt: skip
                await payouts(b, "warmup", warmup, warmup)
                await relay_drained(b)
                pg = PgMeter(b.stack.settings.ledger.url) if args.ledger == "postgres" else None
                if pg is not None:
                    await pg.start()
                cpu = CpuMeter({"workers": b.procs.worker_pids(), "this process": [os.getpid()],
                                "Temporal": [temporal_server_pid()]})  # fmt: skip
                cpu.start()
                ours, statuses = await payouts(b, "bench", n, c)
                cpu.stop()
                if pg is not None:  # the relay's messages to the users are part of a payout's cost
                    await relay_drained(b)
                    await pg.stop()
                rss = [peak for _, peak in b.worker_rss_mb()]
            plain = await Client.connect(address)
            queue = f"baseline-{uuid.uuid4().hex[:8]}"
            async with baseline_workers(address, k, queue, Path(tmp)) as pids:
                await baseline(plain, queue, "baseline-warmup", warmup, warmup)
                floor_cpu = CpuMeter({"workers": pids, "this process": [os.getpid()],
                                      "Temporal": [temporal_server_pid()]})  # fmt: skip
                floor_cpu.start()
                floor = await baseline(plain, queue, "baseline", n, c)
                floor_cpu.stop()

    paid = statuses.get(PayoutStatus.PAID, 0)
    cache = f", sticky cache {args.cache}" if args.cache is not None else ""
    print(
        f"{n} payouts, {k} worker process(es){cache}, concurrency {c}, ledger {args.ledger}, Portmone cap "
        f"{args.portmone_rate:g}/s: {paid} PAID in {ours.wall:.1f} s = {n / ours.wall:.2f} payouts/s"
    )
    print(f"intake -> PAID (incl. the sandbox's {CALLBACK_DELAY} s callback delay): {spread(ours.latencies, 1, 's')}")
    print(
        f"history events per payout: median {statistics.median(ours.events):.0f}, max {max(ours.events)}; "
        f"{ours.events_per_second:.0f} history events/s"
    )
    print(f"worker peak RSS: {', '.join(f'{mb:.0f} MiB' for mb in rss)}")
    print(f"CPU per payout: {cpu.per(n)} (this process: webhook, sandbox, load)")
    if pg is not None:
        print(pg.lines(n, top=40))
    print(
        f"baseline (one activity, one signal after {CALLBACK_DELAY} s, no I/O), same server, {k} worker "
        f"process(es), concurrency {c}: {n / floor.wall:.2f} workflows/s, start -> result {spread(floor.latencies)}, "
        f"{statistics.median(floor.events):.0f} events each, {floor.events_per_second:.0f} history events/s"
    )
    print(f"CPU per baseline workflow: {floor_cpu.per(n)}")
    print(
        f"our history events/s as a share of the baseline's: {ours.events_per_second / floor.events_per_second:.0%}"
        f" (target >= 90 %)"
    )
    print(f"machine: {machine()}")
    others = sorted(s.value for s in statuses if s != PayoutStatus.PAID)
    assert paid == n, f"only {paid} of {n} payouts were PAID; others: {others}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receipts", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1, help="payouts worker processes (and baseline workers)")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--ledger", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--cache", type=int, default=None, help="WORKER_MAX_CACHED_WORKFLOWS for the workers")
    parser.add_argument(
        "--portmone-rate",
        type=float,
        default=1000.0,
        help="WORKER_PORTMONE_REQUESTS_PER_SECOND for the run (high: measure the service, not the cap)",
    )
    parser.add_argument("--profile-workers", metavar="PREFIX",
                        help="run each worker under py-spy; its raw profile goes to PREFIX-worker-<n>.txt")
    parser.add_argument("--py-spy", default="py-spy", help="the py-spy executable (with --profile-workers)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
