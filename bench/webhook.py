"""Portmone callbacks at a fixed rate against the real webhook, beside a bare aiohttp handler that only
signals, on the same dev server in the same run.

    .venv/bin/python -m bench.webhook --rate R --seconds S [--workers K] [--ledger postgres|sqlite]

First R x S payouts are parked awaiting their callbacks (the sandbox drops its own). Then one signed
PAYED callback per payout goes to the webhook (verified, stored, routed by bill id, signalled) at R per
second, open loop; then the same number of POSTs at the same rate to a bare handler that signals a
`BaselineWaiting` workflow (bench/baseline.py) and does nothing else. For each: the achieved rate, the
answer time, and callback -> workflow state, from the callback leaving to the end of the first workflow
task after its signal (read from the history). Target: p99 <= 100 ms at 100 callbacks/s.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from aiohttp import web
from temporalio.client import Client

from bench.baseline import SIGNAL, BaselineWaiting
from bench.harness import (
    CallbackLatency,
    at_rate,
    baseline_workers,
    bench_stack,
    load_client,
    machine,
    park,
    relay_drained,
    send_paid_callbacks,
    signal_to_state,
    spread,
)
from tests.callbacks import paid
from tests.stack import free_port
from tests.temporal_envs import dev_server


def bare_app(client: Client) -> web.Application:
    """Reads the body and signals the workflow named in the path: the least a callback handler can do."""

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        await client.get_workflow_handle(request.match_info["workflow_id"]).signal(SIGNAL)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/signal/{workflow_id}", handle)
    return app


async def bare(client: Client, task_queue: str, count: int, rate: float) -> tuple[float, list[float], CallbackLatency]:
    ids = [f"bare-{uuid.uuid4().hex[:8]}-{i:06d}" for i in range(count)]
    for i in range(0, count, 50):
        await asyncio.gather(*(client.start_workflow(BaselineWaiting.run, id=w, task_queue=task_queue)
                               for w in ids[i:i + 50]))  # fmt: skip
    await asyncio.sleep(2)  # every one waiting for its signal
    runner = web.AppRunner(bare_app(client))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    sent: dict[str, float] = {}
    try:
        async with load_client() as http:

            async def one(i: int) -> float:
                sent[ids[i]] = time.time()
                t0 = time.perf_counter()
                resp = await http.post(f"http://127.0.0.1:{port}/signal/{ids[i]}", content=paid(f"B-{i}"))
                assert resp.status_code == 200, resp.text
                return time.perf_counter() - t0

            answers, achieved = await at_rate(count, rate, one)
    finally:
        await runner.cleanup()
    return achieved, answers, await signal_to_state(client, sent)


async def run(args: argparse.Namespace) -> None:
    count = int(args.rate * args.seconds)
    async with dev_server() as env:
        address = env.client.service_client.config.target_host
        with tempfile.TemporaryDirectory() as tmp:
            async with bench_stack(env.client, Path(tmp), workers=args.workers, ledger=args.ledger,
                                   portmone_rate=1000.0) as b:  # fmt: skip
                bills = await park(b, "hook", count, concurrency=20)
                await relay_drained(b)
                achieved, answers = await send_paid_callbacks(b, bills, args.rate)
                latencies = await signal_to_state(env.client, b.sent)
                answered = dict(sorted(b.answered.items()))
            plain = await Client.connect(address)
            queue = f"baseline-{uuid.uuid4().hex[:8]}"
            async with baseline_workers(address, args.workers, queue, Path(tmp)):
                bare_achieved, bare_answers, bare_latencies = await bare(plain, queue, count, args.rate)

    print(f"{count} callbacks at {args.rate:g}/s for {args.seconds:g} s, {args.workers} worker process(es), "
          f"ledger {args.ledger}")
    print(f"webhook (verify, store, route, signal): accepted {achieved:.1f}/s; answers {answered}, in "
          f"{spread(answers)}; {latencies.lines()}")
    print(f"bare handler (signal only), baseline workflow: achieved {bare_achieved:.1f}/s; answer "
          f"{spread(bare_answers)}; {bare_latencies.lines()}")
    print(f"machine: {machine()}")
    print("target: callback -> state p99 <= 100 ms at 100 callbacks/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ledger", choices=["postgres", "sqlite"], default="postgres")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
