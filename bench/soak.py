"""The soak: several hundred receipts through the real processes under random faults, kills and an
engineer's Resets, then the money promises checked against Portmone's record (the sandbox), the ledger
and every run's history.

    .venv/bin/python -m bench.soak --receipts 300 --workers 3 --seed 7

Starts the Temporal dev server, a PostgreSQL ledger (a throwaway database on 127.0.0.1:5432; `--ledger
sqlite` for a file), `payouts sandbox` (seeded random faults: refusals of each class, 5xx, hangs after
the bill was committed, slow answers, dropped / duplicated / out-of-order / early callbacks, and mixed
verdicts: paid, declined, reversed), `payouts webhook` and `--workers` `payouts worker` processes.
Every 25th receipt was accepted almost a day ago (PAYOUT_ELIGIBILITY_DAYS=1): eligible when it comes,
past its window while its payout is under way. While receipts arrive it SIGKILLs a worker three times
(starting a new one each time), restarts the webhook once, and twice resets a handful of payouts to
their first or last workflow task; after the load it resets some aged receipts' payouts again. Then the
faults stop, operators follow the runbook for every payout in manual review, and it checks the promises
of tests/promises.py.

Prints its figures; exits 1 when a promise is broken (each breach listed).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, ResetReapplyType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError

from ledger import Ledger, upgrade
from payouts.models import PayoutView, payout_workflow_id
from payouts.status import PayoutStatus
from runtime import devdefaults
from tests.ledger.helpers import PG_ADMIN_URL, PgAdmin
from tests.promises import SETTLED, breaches
from tests.runbook_operator import follow_runbook, receipt_bills, view_of
from tests.stack import free_port, sample_receipt
from tests.temporal_envs import dev_server

AGED_EVERY = 25  # every 25th receipt is accepted almost a day ago (PAYOUT_ELIGIBILITY_DAYS=1)
AGES_AFTER = timedelta(seconds=20)
RESETS_EACH = 6  # payouts an engineer resets at each Reset in the chaos
FAULTS: dict[str, Any] = {
    "fail_codes": {"1": 0.04, "3": 0.02, "24": 0.01},
    "http_5xx": 0.02,
    "commit_then_hang": 0.02,
    "latency_ms": {"probability": 0.1, "ms": 300},
    "drop_callback": 0.04,
    "duplicate_callback": 0.08,
    "out_of_order": 0.05,
    "callback_before_answer": 0.05,
    "callback_verdicts": {"PAYED": 0.84, "REJECTED:4": 0.06, "REJECTED:30": 0.04, "RETURN": 0.03, "REJECTED:2": 0.03},
}
NO_FAULTS: dict[str, Any] = {name: None for name in FAULTS} | {"fail_codes": {}}


@dataclass
class Processes:
    env: dict[str, str]
    log_dir: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    webhook: subprocess.Popen[bytes] | None = None
    sandbox: subprocess.Popen[bytes] | None = None
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)  # more webhooks, say
    kills: int = 0
    webhook_restarts: int = 0
    # A profiler that launches the workers (`py-spy record ... -o {name} --`): `{name}` is the worker's name.
    worker_wrapper: list[str] = field(default_factory=list)

    def start(self, name: str, *args: str, env: dict[str, str] | None = None,
              wrapper: Sequence[str] = ()) -> subprocess.Popen[bytes]:  # fmt: skip
        """`payouts <args>` with the shared environment (`env` over it), its output in <log_dir>/<name>.log."""
        log = (self.log_dir / f"{name}.log").open("ab")
        command = [*(part.format(name=name) for part in wrapper), sys.executable, "-m", "console.cli", *args]
        return subprocess.Popen(command, env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)

    def worker_pids(self) -> list[int]:
        """The worker processes themselves (under a profiler: its child)."""
        return [child_of(w.pid) if self.worker_wrapper else w.pid for w in self.workers]

    def start_worker(self) -> subprocess.Popen[bytes]:
        worker = self.start(f"worker-{len(self.workers)}", "worker", wrapper=self.worker_wrapper)
        self.workers.append(worker)
        return worker

    def kill_a_worker(self, rng: random.Random) -> None:
        alive = [w for w in self.workers if w.poll() is None]
        victim = rng.choice(alive)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        self.kills += 1
        self.start_worker()

    def restart_webhook(self) -> None:
        assert self.webhook is not None
        self.webhook.send_signal(signal.SIGTERM)
        self.webhook.wait(30)
        self.webhook = self.start(f"webhook-{self.webhook_restarts + 1}", "webhook")
        self.webhook_restarts += 1

    def peak_rss_mb(self) -> list[float]:
        """Each live worker's peak resident memory so far (VmHWM), in MiB."""
        return [peak_rss_mb(w.pid) for w in self.workers if w.poll() is None]

    def stop(self) -> None:
        every = [*self.workers, self.webhook, *self.others, self.sandbox]
        if self.worker_wrapper:  # the worker stops; its profiler then writes what it saw and exits
            for pid in self.worker_pids():
                os.kill(pid, signal.SIGTERM)
        for proc in every:
            if proc is not None and proc.poll() is None and (proc not in self.workers or not self.worker_wrapper):
                proc.send_signal(signal.SIGTERM)
        for proc in every:
            if proc is not None:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def child_of(pid: int, timeout: float = 10.0) -> int:
    """The one child of a process (a profiler's), once it has started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise LookupError(f"process {pid} started no child in {timeout} s")


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident set size (VmHWM of /proc/<pid>/status), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmHWM for process {pid}")


def stack_environment(*, temporal_address: str, ledger_url: str, sandbox_port: int, webhook_port: int,
                      internal_port: int, data_dir: Path, callback_timeout: int) -> dict[str, str]:
    """The environment of every process of a soak-like stack: dev defaults, short Portmone timeouts,
    limits that never reject a benchmark's receipts, a task queue of its own, free metrics ports. The
    webhook's public listener (callbacks) is on `webhook_port`, its internal one (intake, health) on
    `internal_port`."""
    sandbox_url, webhook_url = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{webhook_port}"
    return {
        **os.environ,
        **devdefaults.dev_environment(sandbox_url=sandbox_url, webhook_url=webhook_url, data_dir=str(data_dir)),
        "LEDGER_URL": ledger_url,
        "LEDGER_USER_DAILY_LIMIT": "1000000",
        "LEDGER_DAILY_BUDGET_KOPECKS": str(10**12),
        "TEMPORAL_ADDRESS": temporal_address,
        "TEMPORAL_TASK_QUEUE": f"soak-{uuid.uuid4().hex[:8]}",
        "WORKER_METRICS_PORT": "0",  # several workers on one machine: each its own free port
        "WEBHOOK_PORT": str(webhook_port),
        "WEBHOOK_INTERNAL_PORT": str(internal_port),
        "WEBHOOK_REDELIVER_INTERVAL_SECONDS": "2",
        "SANDBOX_PORT": str(sandbox_port),
        "SANDBOX_CALLBACK_DELAY_SECONDS": "0.2",
        "PORTMONE_CONNECT_TIMEOUT_SECONDS": "2",
        "PORTMONE_WRITE_TIMEOUT_SECONDS": "2",
        "PORTMONE_READ_TIMEOUT_SECONDS": "4",
        "PAYOUT_BILL_ATTEMPT_TIMEOUT_SECONDS": "20",
        "PAYOUT_CALLBACK_TIMEOUT_SECONDS": str(callback_timeout),
        "PAYOUT_RETRY_BACKOFF_SECONDS": "3",
        "PAYOUT_MAX_BILL_ROUNDS": "2",
        "PAYOUT_MANUAL_REMINDER_SECONDS": "300",
        # One day: the soak's aged receipts pass the window while their payouts are under way.
        "PAYOUT_ELIGIBILITY_DAYS": "1",
    }


async def wait_http(url: str, timeout: float = 60, ok: tuple[int, ...] = (200,)) -> None:
    """Until `url` answers a GET with one of `ok`."""
    async with httpx.AsyncClient(timeout=2) as http, asyncio.timeout(timeout):
        while True:
            try:
                if (await http.get(url)).status_code in ok:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)


async def submit(http: httpx.AsyncClient, internal_url: str, receipt_id: str, n: int, *, aged: bool = False) -> float:
    """POST one accepted receipt until the webhook answers 202 (it may be restarting); the intake is
    idempotent, so a repeat is harmless. An `aged` receipt was accepted a day less `AGES_AFTER` ago: it is
    eligible when it comes (PAYOUT_ELIGIBILITY_DAYS=1) and past the window soon after. Returns the
    seconds it took."""
    accepted = datetime.now(UTC) - (timedelta(days=1) - AGES_AFTER if aged else timedelta(minutes=1))
    body = sample_receipt(receipt_id, msisdn=f"38000{n:07d}", accepted_at=accepted.isoformat())
    started = time.perf_counter()
    while True:
        try:
            resp = await http.post(f"{internal_url}/v1/receipts/accepted", json=body,
                                   headers={"Authorization": f"Bearer {devdefaults.DEV_INTAKE_TOKEN}"})
            if resp.status_code == 202:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.5)


async def settle(client: Client, receipts: list[str], timeout: float) -> dict[str, PayoutView | None]:
    """Wait until every payout is settled or waits for a person (or the time is up)."""
    deadline = time.monotonic() + timeout
    views: dict[str, PayoutView | None] = {}
    while True:
        views = dict(zip(receipts, await asyncio.gather(*(view_of(client, r) for r in receipts)), strict=True))
        waiting = [r for r, v in views.items() if v is None or v.status not in SETTLED]
        if not waiting or time.monotonic() > deadline:
            return views
        await asyncio.sleep(2)


async def check(client: Client, http: httpx.AsyncClient, sandbox_url: str, ledger: Ledger,
                receipts: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The promises (tests/promises.py), and the figures: payouts by status and reason, bills, paid bills."""
    figures: dict[str, Any] = collections.Counter()
    for receipt in receipts:
        bills = await receipt_bills(http, sandbox_url, receipt)
        figures["bills"] += len(bills)
        figures["paid_bills"] += sum(b["status"] == "PAYED" for b in bills)
        view = await view_of(client, receipt)
        if view is not None:
            figures[f"status {view.status.value}"] += 1
            if view.status == PayoutStatus.MANUAL_REVIEW:
                figures[f"reason {view.escalation_reason}"] += 1
    return await breaches(ledger, http, sandbox_url, client, receipts), dict(figures)


async def reset_some(client: Client, receipts: list[str], rng: random.Random, count: int) -> int:
    """An engineer presses Reset on `count` payouts that have gone beyond reserving, to the first or the last
    completed workflow task; returns how many were reset."""
    done = 0
    for receipt in rng.sample(receipts, min(count * 3, len(receipts))):
        if done == count:
            break
        handle = client.get_workflow_handle(payout_workflow_id(receipt))
        try:  # its intake may still be on its way
            described = await handle.describe()
            history = await client.get_workflow_handle(handle.id, run_id=described.run_id).fetch_history()
        except RPCError:
            continue
        completed = [e.event_id for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
        if len(completed) < 2:
            continue
        await client.workflow_service.reset_workflow_execution(ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=handle.id, run_id=described.run_id),
            reason="soak: an engineer pressed Reset",
            workflow_task_finish_event_id=rng.choice([completed[0], completed[-1]]),
            request_id=str(uuid.uuid4()),
            reset_reapply_type=ResetReapplyType.RESET_REAPPLY_TYPE_ALL_ELIGIBLE,  # the Web UI's default
        ))  # fmt: skip
        done += 1
    return done


async def throwaway_ledger(kind: str, data_dir: Path) -> tuple[str, PgAdmin | None]:
    """A migrated ledger for one run: a fresh PostgreSQL database (dropped by the admin returned), or a
    SQLite file in `data_dir`."""
    admin: PgAdmin | None = None
    if kind == "postgres":
        from sqlalchemy.ext.asyncio import create_async_engine
        from sqlalchemy.pool import NullPool

        admin = PgAdmin(create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool))
        ledger_url = await admin.create_database()
    else:
        ledger_url = f"sqlite+aiosqlite:///{data_dir}/ledger.db"
    await asyncio.to_thread(upgrade, ledger_url)
    return ledger_url, admin


async def soak(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    data_dir = Path(tempfile.mkdtemp(prefix="payouts-soak-"))
    ledger_url, admin = await throwaway_ledger(args.ledger, data_dir)
    ledger = Ledger.from_url(ledger_url)
    sandbox_port, webhook_port, internal_port = free_port(), free_port(), free_port()
    sandbox_url, internal_url = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{internal_port}"
    print(f"soak: {args.receipts} receipts, {args.workers} workers, seed {args.seed}, ledger {args.ledger}, "
          f"logs in {data_dir}")
    async with dev_server() as temporal:
        env = stack_environment(
            temporal_address=temporal.client.service_client.config.target_host, ledger_url=ledger_url,
            sandbox_port=sandbox_port, webhook_port=webhook_port, internal_port=internal_port, data_dir=data_dir,
            callback_timeout=args.callback_timeout,
        )
        procs = Processes(env=env, log_dir=data_dir)
        http = httpx.AsyncClient(timeout=30)
        started = time.perf_counter()
        try:
            procs.sandbox = procs.start("sandbox", "sandbox", "--port", str(sandbox_port), "--seed", str(args.seed))
            procs.webhook = procs.start("webhook", "webhook")
            for _ in range(args.workers):
                procs.start_worker()
            await wait_http(f"{sandbox_url}/_sandbox/health")
            await wait_http(f"{internal_url}/readyz")
            (await http.post(f"{sandbox_url}/_sandbox/faults", json=FAULTS)).raise_for_status()

            receipts = [f"SOAK-{args.seed}-{i:05d}" for i in range(args.receipts)]
            aged = set(receipts[::AGED_EVERY])
            chaos = {args.receipts // 4: "kill", args.receipts // 2: "kill", 3 * args.receipts // 4: "kill",
                     (3 * args.receipts) // 5: "webhook", (2 * args.receipts) // 5: "reset",
                     (4 * args.receipts) // 5: "reset"}
            gate = asyncio.Semaphore(args.concurrency)
            intake: list[float] = []
            resets = 0

            async def one(i: int, receipt: str) -> None:
                async with gate:
                    intake.append(await submit(http, internal_url, receipt, i, aged=receipt in aged))

            tasks = []
            for i, receipt in enumerate(receipts):
                tasks.append(asyncio.create_task(one(i, receipt)))
                if chaos.get(i) == "kill":
                    await asyncio.sleep(0.5)  # let some calls be in flight
                    procs.kill_a_worker(rng)
                elif chaos.get(i) == "webhook":
                    procs.restart_webhook()
                elif chaos.get(i) == "reset":  # the aged receipts among them are past their window by now
                    resets += await reset_some(temporal.client, receipts[:i], rng, RESETS_EACH)
                await asyncio.sleep(args.interval)
            await asyncio.gather(*tasks)
            loaded = time.perf_counter() - started

            views = await settle(temporal.client, receipts, timeout=args.callback_timeout * 4 + 120)
            (await http.post(f"{sandbox_url}/_sandbox/faults", params={"mode": "replace"}, json={})).raise_for_status()
            first_pass, _ = await check(temporal.client, http, sandbox_url, ledger, receipts)
            queue = [r for r, v in views.items() if v is not None and v.status == PayoutStatus.MANUAL_REVIEW]
            reasons = collections.Counter(str(views[r].escalation_reason) for r in queue)  # type: ignore[union-attr]
            decided = 0
            for n, receipt in enumerate(queue):
                if await follow_runbook(temporal.client, http, sandbox_url, receipt, prefer_retry=n % 2 == 0):
                    decided += 1
            # Resets after the load: aged receipts, long past their window, reset in manual review or settled.
            resets += await reset_some(temporal.client, sorted(aged), rng, RESETS_EACH)
            await settle(temporal.client, receipts, timeout=args.callback_timeout * 3 + 120)
            broken, figures = await check(temporal.client, http, sandbox_url, ledger, receipts)
            broken = first_pass + broken
            requests = [r for r in (await http.get(f"{sandbox_url}/_sandbox/requests")).json()["requests"]
                        if r.get("method") == "bills.create"]
        finally:
            await http.aclose()
            procs.stop()
            await ledger.aclose()
            if admin is not None:
                await admin.drop_all()
                await admin.engine.dispose()

    total = time.perf_counter() - started
    print(f"ran {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: load {loaded:.0f} s, in all {total:.0f} s; "
          f"{procs.kills} worker SIGKILLs, {procs.webhook_restarts} webhook restart, {resets} Resets, "
          f"{len(aged)} receipts that aged past the eligibility window")
    print(f"intake until 202 (retried across the restart): p50 {sorted(intake)[len(intake) // 2] * 1000:.0f} ms, "
          f"max {max(intake):.1f} s")
    print(f"bills.create requests {len(requests)}, bills {figures.get('bills', 0)}, "
          f"paid bills {figures.get('paid_bills', 0)}; operator decisions {decided} of {len(queue)} in the queue")
    print(f"the queue before the operators: {dict(sorted(reasons.items()))}")
    for key in sorted(k for k in figures if k.startswith(("status ", "reason "))):
        print(f"  {key}: {figures[key]}")
    if broken:
        print(f"BROKEN PROMISES ({len(broken)}):")
        for line in broken:
            print(f"  {line}")
        return 1
    print("every promise held (tests/promises.py): at most one paid bill per receipt; none cancelled or rejected "
          "while a bill of it is paid; a PAID row and its search attributes name the paid bill; every receipt "
          "settled or waiting for a person with a reason and every bill that may hold money; no workflow failed "
          "or terminated; no update accepted and left unanswered; ledger and workflow agree; histories bounded")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receipts", type=int, default=300)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between submissions")
    parser.add_argument("--callback-timeout", type=int, default=30, help="PAYOUT_CALLBACK_TIMEOUT_SECONDS")
    parser.add_argument("--ledger", choices=["postgres", "sqlite"], default="postgres")
    sys.exit(asyncio.run(soak(parser.parse_args())))


if __name__ == "__main__":
    main()
