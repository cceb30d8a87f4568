"""Temporal clients for the consumer that misbehave the way the real world does: one that dies right
after Temporal started the payout (before the message is acknowledged), one that holds a start in
hand until told, one that finds Temporal unreachable for a while. Each wraps the real client."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode


class _Wrapped:
    def __init__(self, inner: Client) -> None:
        self._inner = inner
        self.starts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class DiesAfterStart(_Wrapped):
    """The process is killed (SIGKILL, no clean-up) the moment Temporal confirms a start."""

    async def start_workflow(self, *args: Any, **kwargs: Any) -> Any:
        await self._inner.start_workflow(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)


class HeldStart(_Wrapped):
    """The first start is made, then held (`held` is set) until `release` is set: a message in hand."""

    def __init__(self, inner: Client) -> None:
        super().__init__(inner)
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def start_workflow(self, *args: Any, **kwargs: Any) -> Any:
        self.starts += 1
        handle = await self._inner.start_workflow(*args, **kwargs)
        if not self.held.is_set():
            self.held.set()
            await self.release.wait()
        return handle


class UnreachableFirst(_Wrapped):
    """The first `times` starts find Temporal unreachable (RPCError UNAVAILABLE, as the SDK raises it)."""

    def __init__(self, inner: Client, times: int) -> None:
        super().__init__(inner)
        self.times = times

    async def start_workflow(self, *args: Any, **kwargs: Any) -> Any:
        self.starts += 1
        if self.starts <= self.times:
            raise RPCError("injected: Temporal unreachable", RPCStatusCode.UNAVAILABLE, b"")
        return await self._inner.start_workflow(*args, **kwargs)
