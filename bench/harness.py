"""What the benchmarks share: the stack (the test harness's sandbox and webhook in this process, a
PostgreSQL or SQLite ledger of its own, K `payouts worker` processes), the baseline's worker processes,
payouts parked awaiting their callbacks, signed callbacks sent at a fixed rate, and the figures
(percentiles, callback -> workflow-state latency read from the histories)."""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import sqlalchemy as sa
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench.soak import Processes, peak_rss_mb
from ledger import schema
from payouts.models import PayoutView, payout_workflow_id
from payouts.names import STATUS_QUERY
from payouts.status import PayoutStatus
from runtime.settings import LedgerSettings, PayoutSettings, WebhookSettings
from runtime.signing import signature_headers
from tests.callbacks import paid
from tests.ledger.helpers import PG_ADMIN_URL, PgAdmin
from tests.stack import Stack, running_stack, settings_env

T = TypeVar("T")
# Limits that never reject a benchmark's receipts.
LEDGER_ENV = {"LEDGER_USER_DAILY_LIMIT": "1000000", "LEDGER_DAILY_BUDGET_KOPECKS": str(10**12)}


def machine() -> str:
    """What else the machine was doing: the benchmarks share it."""
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {one:.1f} (1 min), {five:.1f} (5 min) at the end"


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * q + 0.5) - 1))]


def spread(values: Sequence[float], unit: float = 1000.0, suffix: str = "ms") -> str:
    return (f"p50 {pct(values, 0.5) * unit:.1f} {suffix}, p95 {pct(values, 0.95) * unit:.1f} {suffix}, "
            f"p99 {pct(values, 0.99) * unit:.1f} {suffix}")


@asynccontextmanager
async def ledger_url(kind: str, tmp: Path) -> AsyncIterator[str]:
    """A fresh ledger database: a throwaway PostgreSQL database on 127.0.0.1:5432, or a SQLite file."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp}/ledger.db"
        return
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    admin = PgAdmin(create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool))
    try:
        yield await admin.create_database()
    finally:
        await admin.drop_all()
        await admin.engine.dispose()


@dataclass
class BenchStack:
    stack: Stack
    procs: Processes
    sent: dict[str, float] = field(default_factory=dict)  # workflow id -> when its callback left (time.time())
    answered: dict[int, int] = field(default_factory=dict)  # the webhook's answers to them, by HTTP status

    def worker_rss_mb(self) -> list[tuple[float, float]]:
        """(now, peak) resident memory of each worker process, MiB."""
        return [(current_rss_mb(pid), peak_rss_mb(pid)) for pid in self.procs.worker_pids()]


def current_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for process {pid}")


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (/proc/<pid>/stat), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def temporal_server_pid() -> int:
    """The dev server this process started (a child named `temporal`)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, _, rest = stat.read_text().partition(" (")[2].partition(")")
        except OSError:
            continue
        if name == "temporal" and int(rest.split()[1]) == os.getpid():
            return int(stat.parent.name)
    raise LookupError("no Temporal dev server started by this process")


@dataclass
class CpuMeter:
    """CPU seconds used by named groups of processes between `start()` and `stop()`."""

    groups: dict[str, list[int]]
    used: dict[str, float] = field(default_factory=dict)

    def _now(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in self.groups.items()}

    def start(self) -> None:
        self.used = self._now()

    def stop(self) -> None:
        self.used = {name: value - self.used[name] for name, value in self._now().items()}

    def per(self, n: int) -> str:
        return ", ".join(f"{name} {value / n * 1000:.0f} ms" for name, value in self.used.items())


@asynccontextmanager
async def bench_stack(
    client: Client, tmp: Path, *, workers: int, ledger: str, portmone_rate: float,
    payout: PayoutSettings | None = None, worker_env: dict[str, str] | None = None,
    worker_wrapper: Sequence[str] = (),
) -> AsyncIterator[BenchStack]:  # fmt: skip
    """The stack with `workers` worker processes (each runs the outbox relay, as `payouts worker` does;
    this process runs none). The Portmone cap is raised to `portmone_rate` so the benchmark measures the
    service, not the cap. Workers run with bytecode caching, as an installed image does: without it the
    workflow sandbox compiles the workflow modules from source for every workflow it loads."""
    async with ledger_url(ledger, tmp) as url, running_stack(
        client, tmp, workers=False, relay=False, payout=payout or PayoutSettings(),
        redeliver_interval=WebhookSettings().redeliver_interval_seconds,  # the sweep polls as in production
        ledger_settings=LedgerSettings(url=url, user_daily_limit=10**6, daily_budget_kopecks=10**12),
    ) as stack:  # fmt: skip
        env = {**os.environ, **settings_env(stack.settings), **LEDGER_ENV,
               "WORKER_PORTMONE_REQUESTS_PER_SECOND": str(portmone_rate), **(worker_env or {})}  # fmt: skip
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        procs = Processes(env=env, log_dir=tmp, worker_wrapper=list(worker_wrapper))
        try:
            for _ in range(workers):
                procs.start_worker()
            yield BenchStack(stack, procs)
        finally:
            procs.stop()


def start_baseline_worker(address: str, task_queue: str, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "bench.baseline_worker", "--address", address, "--task-queue", task_queue]
    return subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT)


@asynccontextmanager
async def baseline_workers(address: str, count: int, task_queue: str, log_dir: Path) -> AsyncIterator[list[int]]:
    """`count` baseline worker processes (bench/baseline_worker.py); yields their pids."""
    procs = [start_baseline_worker(address, task_queue, log_dir / f"baseline-{i}.log") for i in range(count)]
    try:
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)


async def bounded(n: int, concurrency: int, one: Callable[[int], Awaitable[Any]]) -> list[Any]:
    gate = asyncio.Semaphore(concurrency)

    async def run(i: int) -> Any:
        async with gate:
            return await one(i)

    return await asyncio.gather(*(run(i) for i in range(n)))


def receipt_body(b: BenchStack, prefix: str, i: int) -> dict[str, Any]:
    return b.stack.receipt(f"{prefix}-{i:06d}", msisdn=f"38000{i:07d}")


async def park(b: BenchStack, prefix: str, n: int, concurrency: int, batch: int = 100) -> dict[str, str]:
    """`n` payouts whose bill exists and whose callback the sandbox dropped: each waits in
    AWAITING_CALLBACK. They go in `batch` at a time, each batch parked before the next, so the payouts
    in motion stay fewer than the workers' sticky caches hold (a burst beyond them is replayed over and
    over: bench.e2e measures bursts). Returns workflow id -> bill id."""
    await b.stack.faults({"drop_callback": True})

    async def one_from(first: int, i: int) -> None:
        resp = await b.stack.post_receipt(receipt_body(b, prefix, first + i))
        assert resp.status_code == 202, resp.text

    started = last_report = time.perf_counter()
    bills: dict[str, str] = {}
    for first in range(0, n, batch):
        size = min(batch, n - first)
        await bounded(size, concurrency, functools.partial(one_from, first))
        while len(bills) < first + size:
            await asyncio.sleep(0.5)
            bills = await awaiting_callback(b, prefix)
        if time.perf_counter() - last_report > 30:
            print(f"  parked {len(bills)} of {n} ({time.perf_counter() - started:.0f} s)", flush=True)
            last_report = time.perf_counter()
    print(f"parked {n} payouts awaiting their callbacks in {time.perf_counter() - started:.0f} s", flush=True)
    return bills


async def awaiting_callback(b: BenchStack, prefix: str) -> dict[str, str]:
    """Workflow id -> bill id of this run's payouts that the ledger has in AWAITING_CALLBACK with their bill
    recorded (the attempt's answer moves the status; the bill id on the payout follows in its own step)."""
    t = schema.payouts
    query = sa.select(t.c.id, t.c.bill_id).where(
        t.c.status == PayoutStatus.AWAITING_CALLBACK.value, t.c.bill_id.is_not(None),
        t.c.id.startswith(payout_workflow_id(f"{prefix}-")),
    )
    async with b.stack.ledger.engine.connect() as conn:
        return {row.id: row.bill_id for row in await conn.execute(query)}


async def relay_drained(b: BenchStack, timeout: float = 1800) -> float:
    """Wait until the workers' relays have delivered every payout event (the user's messages of the
    parked payouts, say), so that what is measured next does not share the machine with them."""
    started = time.perf_counter()
    async with asyncio.timeout(timeout):
        while True:
            if not any(c.pending for c in await b.stack.ledger.outbox.backlog()):
                return time.perf_counter() - started
            await asyncio.sleep(1)


async def at_rate(count: int, rate: float, one: Callable[[int], Coroutine[Any, Any, T]]) -> tuple[list[T], float]:
    """Start `one(i)` for i < count at a fixed rate (open loop: a slow answer never delays the next
    start). Returns the results and the achieved rate of completed calls."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks: list[asyncio.Task[T]] = []
    for i in range(count):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    results = await asyncio.gather(*tasks)
    return results, count / (loop.time() - start)


@asynccontextmanager
async def load_client() -> AsyncIterator[aiohttp.ClientSession]:
    """The load generator's HTTP client: no connection cap (an open loop must not queue on its side).
    aiohttp's, not httpx's: httpx's pool looks at every open connection for each request, so once a slow
    handler had a few hundred open the generator itself was the busiest process and set the rate."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


async def send_paid_callbacks(
    b: BenchStack, bills: dict[str, str], rate: float, url: str | None = None
) -> tuple[float, list[float]]:
    """A signed PAYED callback for each bill, at `rate` per second, to the real webhook (the stack's, or
    `url`). Returns the rate of accepted callbacks (2xx, from the first sent to the last answered) and
    the answer times; records when each accepted callback left (`b.sent`) and the answers by HTTP status
    (`b.answered`): 200 stored and signalled, 202 stored (the redelivery sweep signals it), 503 not
    stored (Portmone retries)."""
    secrets = b.stack.settings.webhook.callback_secret_list()[:1]
    url = url or f"{b.stack.webhook_url}/portmone/callback"
    # signed before the clock starts: the generator's own work per callback stays out of the rate
    prepared: list[tuple[str, bytes, dict[str, str]]] = []
    for workflow_id, bill_id in bills.items():
        body = paid(bill_id)
        prepared.append((workflow_id, body, {"Content-Type": "application/xml", **signature_headers(secrets, body)}))

    async with load_client() as http:

        async def one(i: int) -> float:
            workflow_id, body, headers = prepared[i]
            left = time.time()
            t0 = time.perf_counter()
            async with http.post(url, data=body, headers=headers) as resp:
                status, text = resp.status, await resp.text()
            b.answered[status] = b.answered.get(status, 0) + 1
            assert status in (200, 202, 503), (status, workflow_id, text)
            if status != 503:
                b.sent[workflow_id] = left
            return time.perf_counter() - t0

        answers, achieved = await at_rate(len(prepared), rate, one)
    return achieved * len(b.sent) / len(prepared), answers


@dataclass
class CallbackLatency:
    """Where a callback's time went, per callback, in seconds, from the history's timestamps."""

    total: list[float] = field(default_factory=list)  # callback left -> first workflow task after its signal done
    signalled: list[float] = field(default_factory=list)  # callback left -> signal in the history (the webhook)
    queued: list[float] = field(default_factory=list)  # signal -> a worker picked its workflow task up
    task: list[float] = field(default_factory=list)  # the workflow task itself (a replay when evicted)

    @property
    def p99(self) -> float:
        return pct(self.total, 0.99)

    def lines(self) -> str:
        return (f"callback -> workflow state {spread(self.total)}\n  of which: callback -> signal recorded "
                f"{spread(self.signalled)}; signal -> task picked up {spread(self.queued)}; the task "
                f"{spread(self.task)}")


_SIGNALED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
_TASK_STARTED = EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
_TASK_COMPLETED = EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED


async def signal_to_state(client: Client, sent: dict[str, float], timeout: float = 120) -> CallbackLatency:
    """From each callback leaving to its workflow's state changing: the end of the first workflow task after
    the signal, read from the history (whose clock is this machine's). Waits until each has one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    found = CallbackLatency()

    async def one(workflow_id: str, t0: float) -> None:
        handle = client.get_workflow_handle(workflow_id)
        while True:
            at: dict[int, float] = {}
            for event in (await handle.fetch_history()).events:
                when = event.event_time.ToMicroseconds() / 1e6
                if event.event_type == _SIGNALED and _SIGNALED not in at:
                    at[_SIGNALED] = when
                elif _SIGNALED in at and event.event_type in (_TASK_STARTED, _TASK_COMPLETED):
                    at.setdefault(event.event_type, when)
                    if event.event_type == _TASK_COMPLETED:
                        found.total.append(when - t0)
                        found.signalled.append(at[_SIGNALED] - t0)
                        found.queued.append(at[_TASK_STARTED] - at[_SIGNALED])
                        found.task.append(when - at[_TASK_STARTED])
                        return
            if loop.time() > deadline:
                raise TimeoutError(f"{workflow_id}: no workflow task after its signal in {timeout} s")
            await asyncio.sleep(1)

    items = list(sent.items())
    await bounded(len(items), 20, lambda i: one(*items[i]))
    return found


async def final_status(client: Client, workflow_id: str, timeout: float = 300) -> PayoutStatus:
    """The payout's status once its workflow ended (PAID ends it), or as it stands after `timeout`."""
    handle = client.get_workflow_handle(workflow_id, result_type=PayoutView)
    try:
        async with asyncio.timeout(timeout):
            view: PayoutView = await handle.result()
    except TimeoutError:
        view = await handle.query(STATUS_QUERY, result_type=PayoutView)
    return view.status
