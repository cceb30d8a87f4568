"""`payouts dev --demo N`: submit N sample receipts, show progress, end with a table of outcomes.

While it runs, the log goes to a file under the data dir (the progress bar stays readable); the
table is rich in a terminal and plain, never cut, when the output is a file or a pipe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from temporalio.client import Client

from console.ops import table as plain
from payouts.models import PayoutView
from payouts.money import format_amount
from payouts.names import STATUS_QUERY
from payouts.status import TERMINAL, PayoutStatus
from runtime.settings import Settings

# Operator code 00 does not exist: these numbers are valid in form and belong to nobody.
_DEMO_PHONE = "38000{:07d}"
SETTLED = TERMINAL | {PayoutStatus.MANUAL_REVIEW}
DEMO_LOG = "dev.log"
COLUMNS = ("workflow", "amount", "phone", "bill", "status", "reason")


def sample_receipt(run: str, i: int) -> dict[str, object]:
    return {
        "receipt_id": f"demo-{run}-{i:03d}",
        "telegram_id": 100_000 + i,
        "msisdn": _DEMO_PHONE.format(i),
        "amount_kopecks": 2500,
        "currency": "UAH",
        "accepted_at": datetime.now(UTC).isoformat(),
    }


async def submit(http: httpx.AsyncClient, internal_url: str, token: str, receipt: dict[str, object]) -> str:
    resp = await http.post(
        f"{internal_url}/v1/receipts/accepted", json=receipt, headers={"Authorization": f"Bearer {token}"}
    )
    if resp.status_code != 202:
        raise RuntimeError(f"intake refused {receipt['receipt_id']}: HTTP {resp.status_code} {resp.text}")
    return str(resp.json()["workflow_id"])


async def run_demo(client: Client, internal_url: str, settings: Settings, count: int, *, log_file: Path,
                   timeout: float = 300) -> int:
    console = Console()
    print(f"demo: {count} sample receipts to {internal_url}; the log goes to {log_file} while it runs", flush=True)
    with logs_to(log_file):
        ids, views = await _submit_and_follow(client, internal_url, settings, count, timeout, console)
    rows = [_row(wid, views.get(wid)) for wid in ids]
    if console.is_terminal:
        table = Table(title="Demo payouts")
        for col in COLUMNS:
            table.add_column(col, overflow="fold")  # a narrow terminal wraps a cell, never cuts it
        for row in rows:
            table.add_row(*row)
        console.print(table)
    else:  # a file or a pipe: every cell whole, whatever the width
        print(plain.render(COLUMNS, rows))
    totals = Counter(v.status.value for v in views.values())
    print("totals: " + ", ".join(f"{k}={n}" for k, n in sorted(totals.items())))
    return 0 if totals.get("PAID", 0) == count else 1


async def _submit_and_follow(client: Client, internal_url: str, settings: Settings, count: int, timeout: float,
                             console: Console) -> tuple[list[str], dict[str, PayoutView]]:
    run = datetime.now(UTC).strftime("%H%M%S")
    token = settings.webhook.intake_token.get_secret_value()
    async with httpx.AsyncClient(timeout=10) as http:
        ids = await asyncio.gather(*(submit(http, internal_url, token, sample_receipt(run, i)) for i in range(count)))
    views: dict[str, PayoutView] = {}
    deadline = time.monotonic() + timeout
    with Progress(console=console) as progress:
        task = progress.add_task(f"{count} payouts", total=count)
        while len(views) < count and time.monotonic() < deadline:
            for wid in ids:
                if wid in views:
                    continue
                view = await client.get_workflow_handle(wid).query(STATUS_QUERY, result_type=PayoutView)
                if view.status in SETTLED:
                    views[wid] = view
            progress.update(task, completed=len(views))
            await asyncio.sleep(0.5)
    return list(ids), views


def _row(wid: str, v: PayoutView | None) -> list[str]:
    if v is None:
        return [wid, "", "", "", "UNFINISHED", "still running at the demo's deadline"]
    return [wid, f"{format_amount(v.amount_kopecks)} {v.currency}", v.masked_msisdn, v.bill_id or "",
            v.status.value, v.escalation_reason or v.rejection_reason or ""]


@contextmanager
def logs_to(path: Path) -> Iterator[None]:
    """Send every log record to `path` instead of the terminal, then put the terminal back."""
    root = logging.getLogger()
    saved = root.handlers[:]
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(saved[0].formatter if saved and saved[0].formatter else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers = [handler]
    try:
        yield
    finally:
        root.handlers = saved
        handler.close()
