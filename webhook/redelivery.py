"""Telling a payout's workflow about a stored callback, now or later.

`signal_stored` is the one way a stored callback reaches its workflow: the signal, then a note that
the workflow was told, which the caller writes to the ledger in batches (the callback handler through
the app's `webhook.marks.SignalledMarks`, the sweep once per pass). The sweep (`redeliver_forever`,
started with the webhook) re-signals routed callbacks whose workflow was never told: Temporal was
unreachable when they came, their route appeared later (a late bills.create answer), or their mark
was lost. The workflow dedupes, so a repeat is harmless and every replica may sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from aiohttp import web
from temporalio.service import RPCError, RPCStatusCode

from ledger import CallbackRecord, LedgerUnavailable
from payouts.models import CallbackSignal
from payouts.names import CALLBACK_SIGNAL
from runtime import metrics
from webhook.deps import WebhookDeps
from webhook.keys import DEPS

_log = logging.getLogger("payouts.webhook.redelivery")


class Told(StrEnum):
    SIGNALLED = "signalled"
    CLOSED = "closed_payout"  # the workflow has ended; the stored callback is there for reconciliation
    FAILED = "signal_failed"  # Temporal refused this signal: the next sweep tries it again, the rest go on
    UNREACHABLE = "temporal_unreachable"  # Temporal could not be reached: this pass stops, the next one tries

    @property
    def signalled(self) -> bool:
        """The workflow heard of the callback, or has ended (the callback waits for reconciliation)."""
        return self in (Told.SIGNALLED, Told.CLOSED)

    @property
    def result(self) -> str:
        """The `result` label of the callback metrics (one `signal_failed` for both failures)."""
        return self.value if self.signalled else Told.FAILED.value


# Temporal itself cannot be reached: every signal of this pass would fail the same way.
_UNREACHABLE = frozenset({RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED})


metrics.start_at_zero(metrics.REDELIVERED, metrics.every(result={told.result for told in Told}))


async def signal_stored(
    deps: WebhookDeps, payout_id: str, stored: CallbackRecord, note: Callable[[int], None]
) -> Told:
    """Signal `portmone_callback` to the payout's workflow; when it was told (or has ended), `note` the
    callback's id for the ledger's `signalled_at`. An unwritten note is harmless: the sweep signals
    again, the workflow dedupes."""
    handle = deps.temporal.get_workflow_handle(payout_id)
    try:
        await handle.signal(CALLBACK_SIGNAL, CallbackSignal.from_stored(stored))
        told = Told.SIGNALLED
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            _log.warning("callback %s for %s stored, not signalled: %s", stored.id, payout_id, exc.status.name)
            return Told.UNREACHABLE if exc.status in _UNREACHABLE else Told.FAILED
        told = Told.CLOSED
    note(stored.id)
    return told


async def sweep_once(deps: WebhookDeps) -> dict[Told, int]:
    """One pass over the callbacks that still wait to be told. One that cannot be signalled does not hold
    up the others; the pass stops early only when Temporal itself cannot be reached. The ones told are
    marked signalled together at the end of the pass (one statement)."""
    grace = timedelta(seconds=deps.settings.webhook.redeliver_after_seconds)
    counts = dict.fromkeys(Told, 0)
    waiting = await deps.ledger.callbacks.to_redeliver(stored_before=datetime.now(UTC) - grace)
    told_ids: list[int] = []
    try:
        for stored in waiting:
            assert stored.payout_id is not None
            told = await signal_stored(deps, stored.payout_id, stored, told_ids.append)
            counts[told] += 1
            metrics.record_redelivery(told.result)
            if told is Told.UNREACHABLE:
                break
    finally:
        with contextlib.suppress(LedgerUnavailable):  # unnoted: the next pass signals again; the workflow dedupes
            await deps.ledger.callbacks.mark_signalled(*told_ids)
    if waiting:
        _log.info("redelivery sweep: %s", {k.value: v for k, v in counts.items() if v})
    return counts


async def redeliver_forever(deps: WebhookDeps) -> None:
    interval = deps.settings.webhook.redeliver_interval_seconds
    while True:
        await asyncio.sleep(interval)
        try:
            await sweep_once(deps)
        except LedgerUnavailable as exc:
            _log.warning("redelivery sweep skipped: %s", exc)
        except Exception:  # the sweep must outlive any one bad pass
            _log.exception("redelivery sweep failed; next pass in %s s", interval)


async def redelivery_context(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: the sweep runs while the webhook serves."""
    task = asyncio.get_running_loop().create_task(redeliver_forever(app[DEPS]))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
