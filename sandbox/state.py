"""The sandbox's memory: bills, records of every call, the live fault table, background tasks.

A bill at the simulated Portmone follows one state machine (docs/portmone-protocol.md):

    CREATED -> PAYED -> RETURN
    CREATED -> REJECTED            (declined, or cancelled by an operator in Portmone's cabinet)

A status, once left, is never re-entered; PAYED is never followed by REJECTED, REJECTED never by
PAYED, and RETURN comes only after PAYED. Every change is kept in the bill's `history`.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import secrets
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from payouts.msisdn import mask_msisdn
from sandbox.config import SandboxConfig
from sandbox.faults import FaultTable


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class SimBill:
    bill_id: str
    payee_id: str
    contract_number: str
    amount_kopecks: int
    currency: str
    comment: str
    date: str
    status: str = "CREATED"
    created_at: str = field(default_factory=now_iso)
    # The final callback chosen for it when it was created (`PAYED`, `RETURN`, `REJECTED:<code>`).
    verdict: str | None = None
    cancelled: bool = False
    # Every status it has had: {"status", "at", "cause"}.
    history: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.history:
            self.history.append({"status": self.status, "at": self.created_at, "cause": "bills.create"})

    def move_to(self, status: str, cause: str) -> None:
        """Change the status (callers check `transition_error` first) and keep it in the history."""
        if status != self.status:
            self.status = status
            self.history.append({"status": status, "at": now_iso(), "cause": cause})

    def to_json(self) -> dict[str, Any]:
        return {
            "bill_id": self.bill_id,
            "status": self.status,
            "verdict": self.verdict,
            "cancelled": self.cancelled,
            "history": [dict(h) for h in self.history],
            "payee_id": self.payee_id,
            "contract_masked": mask_msisdn(self.contract_number),
            "amount_kopecks": self.amount_kopecks,
            "currency": self.currency,
            "comment": self.comment,
            "date": self.date,
            "created_at": self.created_at,
        }


OPEN = "CREATED"
# The status changes a bill can make; a repeat of its own status, or a stale CREATED notice, changes nothing.
TRANSITIONS = frozenset({("CREATED", "PAYED"), ("CREATED", "REJECTED"), ("PAYED", "RETURN")})
_FINAL = frozenset({"REJECTED", "RETURN"})


def transition_error(bill: SimBill, status: str) -> str | None:
    """Why `bill` cannot take `status` at Portmone now, or None when it can (or it is a no-op notice)."""
    current = bill.status
    if status in (current, OPEN) or (current, status) in TRANSITIONS:
        return None
    name = f"bill {bill.bill_id} is {current}{' (cancelled in the cabinet)' if bill.cancelled else ''}"
    if status == "RETURN" and current != "PAYED":
        return f"{name}: RETURN comes only after PAYED"
    if current in _FINAL:
        return f"{name}: {current} is final"
    if current == "PAYED":
        return f"{name}: a PAYED bill can only be returned (RETURN), never {status}"
    return f"{name}: it cannot become {status}"


def _random_seed() -> int:
    return secrets.randbelow(2**32)


class SandboxState:
    """Everything one sandbox app knows. Lives in the app under `STATE`."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.callback_url: str | None = config.callback_url
        self.callback_delay_seconds: float = config.callback_delay_seconds
        self.faults: FaultTable = config.faults.merged({})
        # Every random choice comes from `seed` (SANDBOX_SEED, or a random one that health reports):
        # one stream per fake, so Telegram and telecom calls never shift Portmone's choices.
        self.seed: int = config.seed if config.seed is not None else _random_seed()
        self.rng = random.Random()
        self.telegram_rng = random.Random()
        self.telecom_rng = random.Random()
        self._reseed()
        self.bills: dict[str, SimBill] = {}
        self.requests: deque[dict[str, Any]] = deque(maxlen=config.max_records)
        self.callbacks: deque[dict[str, Any]] = deque(maxlen=config.max_records)
        self.telegram: deque[dict[str, Any]] = deque(maxlen=config.max_records)
        self.telegram_messages: dict[tuple[str, int], dict[str, Any]] = {}
        self.telegram_next_id: dict[str, int] = {}
        self.telecom: deque[dict[str, Any]] = deque(maxlen=config.max_records)
        self.topups: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.session: aiohttp.ClientSession | None = None
        # Set (and replaced) by reset and shutdown: wakes requests held by commit_then_hang.
        self.release = asyncio.Event()
        self._ids = itertools.count(1)
        # Bill ids: milliseconds at start + a counter, so a restarted sandbox never reuses one.
        self._bill_prefix = str(int(time.time() * 1000))
        self._bill_counter = itertools.count(1)

    def _reseed(self) -> None:
        self.rng.seed(f"{self.seed}/portmone")
        self.telegram_rng.seed(f"{self.seed}/telegram")
        self.telecom_rng.seed(f"{self.seed}/telecom")

    def next_id(self) -> int:
        return next(self._ids)

    def new_bill_id(self) -> str:
        return f"{self._bill_prefix}{next(self._bill_counter):05d}"

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a background task that app cleanup (and reset) cancels."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def cancel_tasks(self) -> None:
        tasks = [t for t in self.tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def release_hanging(self) -> None:
        self.release.set()
        self.release = asyncio.Event()

    async def reset(self, seed: int | None = None) -> None:
        """Forget every record, bill and fault; pending callbacks are cancelled; the random streams
        start again from the seed (`seed` replaces it when given)."""
        self.release_hanging()
        await self.cancel_tasks()
        self.faults = FaultTable()
        if seed is not None:
            self.seed = seed
        self._reseed()
        self.bills.clear()
        self.requests.clear()
        self.callbacks.clear()
        self.telegram.clear()
        self.telegram_messages.clear()
        self.telegram_next_id.clear()
        self.telecom.clear()
        self.topups.clear()

    # -- app signals -------------------------------------------------------------------------

    async def on_startup(self, app: web.Application) -> None:
        self.session = aiohttp.ClientSession()

    async def on_shutdown(self, app: web.Application) -> None:
        self.release_hanging()

    async def on_cleanup(self, app: web.Application) -> None:
        self.release_hanging()
        await self.cancel_tasks()
        if self.session is not None:
            await self.session.close()
            self.session = None


STATE = web.AppKey("sandbox_state", SandboxState)
