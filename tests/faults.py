"""Faults the sandbox cannot make: a ledger that stops answering, a worker that dies mid-call, a
Temporal that the webhook cannot reach. Each wraps the real component and fails the way the real
thing fails (`LedgerUnavailable`, an exception that kills the activity attempt, `RPCError UNAVAILABLE`),
so the code under test meets nothing it would not meet in production.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from ledger import Ledger, LedgerUnavailable, Operations
from portmone import Outcome, PortmoneClient


@dataclass
class Switch:
    """A fault that is on, off, or on for the next `times` calls that match it (after `skip` calls)."""

    on: bool = False
    times: int | None = None  # None: as long as it is on
    skip: int = 0  # calls that pass before it fires
    fired: int = 0

    def arm(self, times: int | None = None, *, skip: int = 0) -> None:
        self.on, self.times, self.skip = True, times, skip

    def disarm(self) -> None:
        self.on, self.times, self.skip = False, None, 0

    def fire(self) -> bool:
        if not self.on:
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        if self.times is not None:
            if self.times <= 0:
                self.on = False
                return False
            self.times -= 1
        self.fired += 1
        return True


@dataclass
class LedgerFaults:
    """Per-operation outages of the ledger ("group.method", e.g. "attempts.finish" -> switch), plus one for
    every operation."""

    everything: Switch = field(default_factory=Switch)
    methods: dict[str, Switch] = field(default_factory=dict)

    def method(self, name: str) -> Switch:
        return self.methods.setdefault(name, Switch())

    def clear(self) -> None:
        self.everything.disarm()
        for switch in self.methods.values():
            switch.disarm()

    def check(self, name: str) -> None:
        if self.everything.fire() or (name in self.methods and self.methods[name].fire()):
            raise LedgerUnavailable(f"ledger database unavailable: injected outage ({name})")


class FaultyLedger:
    """A `Ledger` whose operations (`ledger.attempts.finish`, …) and coroutine methods (`ping`) fail with
    `LedgerUnavailable` while their fault is armed."""

    def __init__(self, inner: Ledger | Operations, faults: LedgerFaults, prefix: str = "") -> None:
        self._inner = inner
        self._prefix = prefix
        self.faults = faults

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if isinstance(value, Operations):
            return FaultyLedger(value, self.faults, f"{name}.")
        if not callable(value) or name.startswith("_"):
            return value

        @functools.wraps(value)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            self.faults.check(self._prefix + name)
            return await value(*args, **kwargs)

        return guarded


class SimulatedCrash(Exception):
    """The worker died: the activity attempt ends without a word (Temporal retries it)."""


@dataclass
class ClientFaults:
    # The worker dies right after Portmone answered bills.create, before anything is written down.
    crash_after_send: Switch = field(default_factory=Switch)


class CrashingPortmone:
    """A `PortmoneClient` that can die between Portmone's answer and the ledger write."""

    def __init__(self, inner: PortmoneClient, faults: ClientFaults) -> None:
        self._inner = inner
        self.faults = faults

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def send(self, request: Any) -> Outcome:
        outcome = await self._inner.send(request)
        if self.faults.crash_after_send.fire():
            raise SimulatedCrash("worker stopped after Portmone answered bills.create")
        return outcome


@dataclass
class TemporalFaults:
    """The webhook cannot reach Temporal (signals fail with UNAVAILABLE), or Temporal answers and refuses
    the signals to some workflows (`refuse`: workflow id -> the status it answers with)."""

    signals: Switch = field(default_factory=Switch)
    refuse: dict[str, RPCStatusCode] = field(default_factory=dict)


class _FlakyHandle:
    def __init__(self, inner: Any, faults: TemporalFaults) -> None:
        self._inner = inner
        self._faults = faults

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def signal(self, *args: Any, **kwargs: Any) -> None:
        if self._faults.signals.fire():
            raise RPCError("injected: Temporal unreachable", RPCStatusCode.UNAVAILABLE, b"")
        refused = self._faults.refuse.get(self._inner.id)
        if refused is not None:
            raise RPCError("injected: Temporal refused the signal", refused, b"")
        await self._inner.signal(*args, **kwargs)


class FlakyTemporal:
    """A Temporal `Client` for the webhook whose signals fail while `faults.signals` is armed."""

    def __init__(self, inner: Client, faults: TemporalFaults) -> None:
        self._inner = inner
        self.faults = faults

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def get_workflow_handle(self, *args: Any, **kwargs: Any) -> Any:
        return _FlakyHandle(self._inner.get_workflow_handle(*args, **kwargs), self.faults)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0, every: float = 0.1) -> None:
    """Wait until `check()` is true (a safety net for asynchronous effects, never a measured time)."""
    import asyncio

    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(every)
