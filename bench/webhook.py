"""Portmone callbacks at a fixed rate against the real webhook, beside a bare aiohttp handler that only
signals, on the same dev server in the same run, each handler a process of its own.

    .venv/bin/python -m bench.webhook --rate R --seconds S [--workers K] [--ledger postgres|sqlite] [--pause-workers]

First R x S payouts are parked awaiting their callbacks (the sandbox drops its own). Then one signed
PAYED callback per payout goes to a `payouts webhook` process (verified, stored, routed by bill id,
signalled; the load, the sandbox and the stack's own webhook stay in this process) at R per second,
open loop; then the same number of POSTs at the same rate to a bare handler that signals a
`BaselineWaiting` workflow (bench/baseline.py) and does nothing else (bench/bare_handler.py). For each:
the achieved rate, the answer time, the handler process's CPU per callback, and callback -> workflow
state, from the callback leaving to the end of the first workflow task after its signal (read from the
history). Target: p99 <= 100 ms at 100 callbacks/s. With `--pause-workers` the worker processes of
each half are stopped while its callbacks are sent, so the accepted rate is the handler's own, not the
share of two cores the workers leave it (callback -> state then includes the pause).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from temporalio.client import Client

from bench.bare_handler import start_bare_handler
from bench.baseline import BaselineWaiting
from bench.harness import (
    BenchStack,
    CallbackLatency,
    CpuMeter,
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
from bench.soak import child_of, wait_http
from tests.callbacks import paid
from tests.stack import free_port
from tests.temporal_envs import dev_server


@contextmanager
def paused(pids: list[int], pause: bool) -> Iterator[None]:
    """With `pause`, the worker processes stopped (SIGSTOP) meanwhile: their workflow tasks wait, so the
    handler has the machine to itself and what is measured is the handler alone."""
    if pause:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        if pause:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)


async def bare(
    address: str, client: Client, task_queue: str, count: int, rate: float, log_dir: Path,
    workers: list[int], pause: bool,
) -> tuple[float, list[float], CallbackLatency, float]:  # fmt: skip
    """The bare handler (bench/bare_handler.py, a process of its own) at `rate`: the achieved rate, the
    answer times, callback -> state, and the handler's CPU seconds."""
    ids = [f"bare-{uuid.uuid4().hex[:8]}-{i:06d}" for i in range(count)]
    for i in range(0, count, 50):
        await asyncio.gather(*(client.start_workflow(BaselineWaiting.run, id=w, task_queue=task_queue)
                               for w in ids[i:i + 50]))  # fmt: skip
    await asyncio.sleep(2)  # every one waiting for its signal
    port = free_port()
    handler = start_bare_handler(address, port, log_dir / "bare-handler.log")
    sent: dict[str, float] = {}
    bodies = [paid(f"B-{i}") for i in range(count)]  # built before the clock starts, as the webhook's are
    try:
        await wait_http(f"http://127.0.0.1:{port}/signal/none", ok=(405,))
        cpu = CpuMeter({"bare handler": [handler.pid]})
        cpu.start()
        async with load_client() as http:

            async def one(i: int) -> float:
                sent[ids[i]] = time.time()
                t0 = time.perf_counter()
                async with http.post(f"http://127.0.0.1:{port}/signal/{ids[i]}", data=bodies[i]) as resp:
                    assert resp.status == 200, await resp.text()
                return time.perf_counter() - t0

            with paused(workers, pause):
                answers, achieved = await at_rate(count, rate, one)
        cpu.stop()
    finally:
        handler.terminate()
        handler.wait(30)
    return achieved, answers, await signal_to_state(client, sent), cpu.used["bare handler"]


async def measured_webhook(
    b: BenchStack, wrapper: Sequence[str] = ()
) -> tuple[subprocess.Popen[bytes], int, str]:
    """A `payouts webhook` process of its own, beside the stack's, for the measured callbacks: the load
    generator, the sandbox and the stack's own webhook stay in this process. Returns the process started,
    the webhook's pid (under a profiler, `wrapper`: its child's) and its callback URL."""
    port, internal = free_port(), free_port()
    hook = b.procs.start("webhook-measured", "webhook", wrapper=wrapper, env={
        "WEBHOOK_PORT": str(port),
        "WEBHOOK_INTERNAL_PORT": str(internal),
        "WEBHOOK_CALLBACK_HMAC_SECRETS": b.stack.settings.webhook.callback_hmac_secrets.get_secret_value(),
        "WEBHOOK_INTAKE_TOKEN": b.stack.settings.webhook.intake_token.get_secret_value(),
    })  # fmt: skip
    b.procs.others.append(hook)
    await wait_http(f"http://127.0.0.1:{internal}/readyz")
    return hook, child_of(hook.pid) if wrapper else hook.pid, f"http://127.0.0.1:{port}/portmone/callback"


async def run(args: argparse.Namespace) -> None:
    count = int(args.rate * args.seconds)
    async with dev_server() as env:
        address = env.client.service_client.config.target_host
        with tempfile.TemporaryDirectory() as tmp:
            async with bench_stack(env.client, Path(tmp), workers=args.workers, ledger=args.ledger,
                                   portmone_rate=1000.0) as b:  # fmt: skip
                bills = await park(b, "hook", count, concurrency=20)
                await relay_drained(b)
                wrapper = [args.py_spy, "record", "-r", "100", "-f", "raw", "-o", args.profile_webhook,
                           "--"] if args.profile_webhook else []  # fmt: skip
                started, hook, url = await measured_webhook(b, wrapper)
                cpu = CpuMeter({"webhook": [hook]})
                cpu.start()
                with paused(b.procs.worker_pids(), args.pause_workers):
                    achieved, answers = await send_paid_callbacks(b, bills, args.rate, url=url)
                cpu.stop()
                if args.profile_webhook:  # the webhook stops; its profiler then writes what it saw and exits
                    os.kill(hook, signal.SIGTERM)
                    started.wait(60)
                latencies = await signal_to_state(env.client, b.sent)
                answered = dict(sorted(b.answered.items()))
            plain = await Client.connect(address)
            queue = f"baseline-{uuid.uuid4().hex[:8]}"
            async with baseline_workers(address, args.workers, queue, Path(tmp)) as pids:
                bare_achieved, bare_answers, bare_latencies, bare_cpu = await bare(
                    address, plain, queue, count, args.rate, Path(tmp), pids, args.pause_workers)

    print(f"{count} callbacks at {args.rate:g}/s for {args.seconds:g} s, {args.workers} worker process(es), "
          f"ledger {args.ledger}")
    print(f"webhook (verify, store, route, signal; a process of its own): accepted {achieved:.1f}/s; answers "
          f"{answered}, in {spread(answers)}; CPU {cpu.used['webhook'] / count * 1000:.1f} ms per callback; "
          f"{latencies.lines()}")
    print(f"bare handler (signal only; a process of its own), baseline workflow: achieved {bare_achieved:.1f}/s; "
          f"answer {spread(bare_answers)}; CPU {bare_cpu / count * 1000:.1f} ms per callback; {bare_latencies.lines()}")
    print(f"webhook / bare: accepted {achieved / bare_achieved:.2f}, CPU per callback "
          f"{cpu.used['webhook'] / bare_cpu:.2f}, callback -> state p99 {latencies.p99 / bare_latencies.p99:.2f}")
    print(f"machine: {machine()}")
    print("target: callback -> state p99 <= 100 ms at 100 callbacks/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ledger", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--pause-workers", action="store_true",
                        help="stop the workers while the callbacks are sent: the handlers' own capacity (the "
                             "callback -> state figures then include the pause)")
    parser.add_argument("--profile-webhook", metavar="PATH",
                        help="run the measured webhook under py-spy; its raw profile goes to PATH")
    parser.add_argument("--py-spy", default="py-spy", help="the py-spy executable (with --profile-webhook)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
