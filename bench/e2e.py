"""End-to-end payouts on the real Temporal dev server: intake latency, time to PAID, throughput.

    .venv/bin/python -m bench.e2e [--receipts N] [--concurrency C]

The stack is the test harness's (SQLite ledger, sandbox with a 0.2 s callback delay, webhook,
in-process workers). Prints figures, among them the history events per happy-path payout (the bound
is 30, docs/performance.md); asserts only that every payout ended PAID.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from payouts.models import payout_workflow_id
from payouts.settings import PayoutSettings
from payouts.status import PayoutStatus
from tests.stack import Stack, running_stack
from tests.temporal_envs import dev_server


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * q) - 1)]


async def one(stack: Stack, i: int, intake: list[float], settle: list[float], events: list[int]) -> PayoutStatus:
    body = stack.receipt(f"bench-{i:05d}", msisdn=f"38000{i:07d}")
    t0 = time.perf_counter()
    resp = await stack.post_receipt(body)
    intake.append(time.perf_counter() - t0)
    assert resp.status_code == 202, resp.text
    handle = stack.client.get_workflow_handle(payout_workflow_id(body["receipt_id"]))
    view = await stack.wait_status(handle, {PayoutStatus.PAID, PayoutStatus.MANUAL_REVIEW, PayoutStatus.REJECTED},
                                   timeout=300)
    settle.append(time.perf_counter() - t0)
    events.append(len((await handle.fetch_history()).events))
    if view.status != PayoutStatus.PAID:
        print(f"not paid: {view.payout_id} {view.status.value} {view.escalation_reason or view.rejection_reason}"
              f" {view.last_error or ''}")
    return view.status


async def run(n: int, concurrency: int) -> None:
    async with dev_server() as env:
        with tempfile.TemporaryDirectory() as tmp:
            async with running_stack(env.client, Path(tmp), payout=PayoutSettings()) as stack:
                stack.settings.ledger.user_daily_limit = n
                intake: list[float] = []
                settle: list[float] = []
                events: list[int] = []
                gate = asyncio.Semaphore(concurrency)

                async def bounded(i: int) -> PayoutStatus:
                    async with gate:
                        return await one(stack, i, intake, settle, events)

                start = time.perf_counter()
                statuses = await asyncio.gather(*(bounded(i) for i in range(n)))
                wall = time.perf_counter() - start
    paid = sum(1 for s in statuses if s == PayoutStatus.PAID)
    print(f"{n} payouts, concurrency {concurrency}: {paid} PAID in {wall:.1f} s = {n / wall:.1f} payouts/s")
    print(f"intake POST -> 202: p50 {statistics.median(intake) * 1000:.1f} ms, p95 {pct(intake, 0.95) * 1000:.1f} ms")
    print(f"intake -> PAID (incl. 0.2 s sandbox callback delay): p50 {statistics.median(settle):.2f} s, "
          f"p95 {pct(settle, 0.95):.2f} s")
    print(f"history events per payout: median {statistics.median(events):.0f}, max {max(events)}; "
          f"{sum(events) / wall:.0f} history events/s")
    others = sorted({s.value for s in statuses} - {"PAID"})
    assert paid == n, f"only {paid} of {n} payouts were PAID; others: {others}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--receipts", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(run(args.receipts, args.concurrency))


if __name__ == "__main__":
    main()
