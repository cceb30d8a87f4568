"""`payouts dev --demo N`: submit N sample receipts, show progress, end with a table of outcomes."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from temporalio.client import Client

from payouts.models import PayoutView
from payouts.money import format_amount
from payouts.settings import Settings
from payouts.status import TERMINAL, PayoutStatus

# Operator code 00 does not exist: these numbers are valid in form and belong to nobody.
_DEMO_PHONE = "38000{:07d}"
SETTLED = TERMINAL | {PayoutStatus.MANUAL_REVIEW}


def sample_receipt(run: str, i: int) -> dict[str, object]:
    return {
        "receipt_id": f"demo-{run}-{i:03d}",
        "telegram_id": 100_000 + i,
        "msisdn": _DEMO_PHONE.format(i),
        "amount_kopecks": 2500,
        "currency": "UAH",
        "accepted_at": datetime.now(UTC).isoformat(),
    }


async def submit(http: httpx.AsyncClient, webhook_url: str, token: str, receipt: dict[str, object]) -> str:
    resp = await http.post(
        f"{webhook_url}/v1/receipts/accepted", json=receipt, headers={"Authorization": f"Bearer {token}"}
    )
    if resp.status_code != 202:
        raise RuntimeError(f"intake refused {receipt['receipt_id']}: HTTP {resp.status_code} {resp.text}")
    return str(resp.json()["workflow_id"])


async def run_demo(client: Client, webhook_url: str, settings: Settings, count: int, timeout: float = 300) -> int:
    console = Console()
    run = datetime.now(UTC).strftime("%H%M%S")
    token = settings.webhook.intake_token.get_secret_value()
    async with httpx.AsyncClient(timeout=10) as http:
        ids = await asyncio.gather(*(submit(http, webhook_url, token, sample_receipt(run, i)) for i in range(count)))
    views: dict[str, PayoutView] = {}
    deadline = time.monotonic() + timeout
    with Progress(console=console) as progress:
        task = progress.add_task(f"{count} payouts", total=count)
        while len(views) < count and time.monotonic() < deadline:
            for wid in ids:
                if wid in views:
                    continue
                view = await client.get_workflow_handle(wid).query("status", result_type=PayoutView)
                if view.status in SETTLED:
                    views[wid] = view
            progress.update(task, completed=len(views))
            await asyncio.sleep(0.5)

    table = Table(title="Demo payouts")
    for col in ("workflow", "amount", "phone", "bill", "status", "reason"):
        table.add_column(col)
    for wid in ids:
        v = views.get(wid)
        if v is None:
            table.add_row(wid, "", "", "", "UNFINISHED", "still running at the demo's deadline")
            continue
        table.add_row(
            wid, f"{format_amount(v.amount_kopecks)} {v.currency}", v.masked_msisdn, v.bill_id or "",
            v.status.value, v.escalation_reason or v.rejection_reason or "",
        )
    console.print(table)
    totals = Counter(v.status.value for v in views.values())
    console.print("totals: " + ", ".join(f"{k}={n}" for k, n in sorted(totals.items())))
    return 0 if totals.get("PAID", 0) == count else 1
