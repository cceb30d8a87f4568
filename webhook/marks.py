"""Noting in the ledger that a callback's workflow was told, in batches.

A callback whose signal Temporal accepted (or whose workflow has ended) is handed to the app's
`SignalledMarks` (`add`, no I/O), which writes `signalled_at` for every id it holds with one statement
(`ledger.callbacks.mark_signalled`): once `interval` after the first id arrives, or at once when
`batch` are pending, and a last time when the webhook stops (`marks_context`, the public app's
cleanup context, runs after the listener stopped and its requests ended). So a burst of callbacks
costs one mark transaction per batch instead of one per callback, and none of them waits for it.

A lost mark is harmless: the callback stays "routed, never signalled", the redelivery sweep
(webhook.redelivery) signals it again after its grace period, and the workflow dedupes by callback
id. So a ledger outage while flushing keeps the ids for the next flush (after `retry` seconds), and
memory stays bounded: beyond `hold` pending ids the oldest are dropped (the sweep covers them), as are
those a failed last flush could not write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from ledger import Ledger, LedgerUnavailable

_log = logging.getLogger("payouts.webhook.marks")

MARK_INTERVAL_SECONDS = 0.5
MARK_BATCH = 200
MARK_HOLD = 10_000
MARK_RETRY_SECONDS = 1.0


class SignalledMarks:
    """Callback ids whose workflow was told, written to the ledger a batch at a time (one per app)."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        interval: float | None = None,
        grace: float | None = None,
        batch: int = MARK_BATCH,
        hold: int = MARK_HOLD,
        retry: float = MARK_RETRY_SECONDS,
    ) -> None:
        if batch < 1 or hold < batch:
            raise ValueError("a batch holds at least one id, and `hold` at least a batch")
        self._ledger = ledger
        if interval is None:
            # well within the sweep's grace (`grace`), so a callback whose mark is pending is not signalled again
            interval = MARK_INTERVAL_SECONDS if grace is None else min(MARK_INTERVAL_SECONDS, grace / 4)
        self._interval = interval
        self._batch = batch
        self._hold = hold
        self._retry = retry
        self._pending: dict[int, None] = {}  # insertion-ordered set: oldest first
        self._some = asyncio.Event()  # at least one id pending
        self._full = asyncio.Event()  # a batch's worth pending
        self._flushing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, callback_id: int) -> None:
        """Note that this callback's workflow was told; written within `interval`."""
        self._pending[callback_id] = None
        while len(self._pending) > self._hold:
            del self._pending[next(iter(self._pending))]  # the sweep re-signals it; the workflow dedupes
        self._some.set()
        if len(self._pending) >= self._batch:
            self._full.set()

    async def flush(self) -> None:
        """Write every pending id now, a batch per statement. LedgerUnavailable: the unwritten ids stay."""
        async with self._flushing:
            while self._pending:
                ids = list(self._pending)[: self._batch]
                await self._ledger.callbacks.mark_signalled(*ids)
                for callback_id in ids:
                    self._pending.pop(callback_id, None)
            self._some.clear()
            self._full.clear()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="signalled-marks")

    async def close(self) -> None:
        """Stop the timer and write what is pending (once: a ledger that cannot take it loses nothing the
        sweep cannot recover)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except LedgerUnavailable as exc:
            _log.warning("%d signalled marks not written at shutdown (the sweep re-signals): %s", self.pending, exc)

    async def _run(self) -> None:
        while True:
            await self._some.wait()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._full.wait()
            try:
                await self.flush()
            except LedgerUnavailable as exc:
                _log.warning("%d signalled marks kept for the next flush: %s", self.pending, exc)
                await asyncio.sleep(self._retry)
            except Exception:  # the marks must outlive any one bad flush
                _log.exception("writing %d signalled marks failed; kept for the next flush", self.pending)
                await asyncio.sleep(self._retry)


MARKS: web.AppKey[SignalledMarks] = web.AppKey("signalled_marks", SignalledMarks)


async def marks_context(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: the app's batcher runs while it serves and flushes when it stops."""
    marks = app[MARKS]
    marks.start()
    yield
    await marks.close()
