"""The payout a piece of work is about, for every log line written while it runs.

A context (`payout_context`) holds up to five correlation ids — receipt_id, payout_id, bill_id,
telegram_id, workflow_id — and `bind` adds one learnt on the way (the bill id once Portmone
answers). `runtime.logs` puts them on each record as fields, never into the message text. The
webhook opens a context per request; `ActivityLogContext` opens one per activity, from its workflow
id and the ids its input names. Ids only: never a phone, an amount or a secret.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from payouts.models import payout_workflow_id

IDS = ("receipt_id", "payout_id", "bill_id", "telegram_id", "workflow_id")
_PAYOUT_PREFIX = payout_workflow_id("")
_current: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("payout_ids", default=None)


def current_ids() -> dict[str, str]:
    return dict(_current.get() or {})


@contextmanager
def payout_context(**ids: object) -> Iterator[None]:
    """A scope whose log lines carry these ids (and those of the enclosing scope)."""
    token = _current.set({**(_current.get() or {}), **_clean(ids)})
    try:
        yield
    finally:
        _current.reset(token)


def bind(**ids: object) -> None:
    """Add ids to the current scope (outside any scope they last until the task ends)."""
    found = _current.get()
    if found is None:
        _current.set(_clean(ids))
    else:
        found.update(_clean(ids))


def ids_of_workflow(workflow_id: str) -> dict[str, str]:
    """A payout workflow's id is its payout id and names its receipt (`payout-{receipt_id}`)."""
    ids = {"workflow_id": workflow_id}
    if workflow_id.startswith(_PAYOUT_PREFIX) and len(workflow_id) > len(_PAYOUT_PREFIX):
        ids.update(payout_id=workflow_id, receipt_id=workflow_id[len(_PAYOUT_PREFIX):])
    return ids


def _clean(ids: dict[str, object]) -> dict[str, str]:
    return {name: str(value) for name, value in ids.items() if name in IDS and value not in (None, "")}


class ActivityLogContext(Interceptor):
    """Worker interceptor: each activity runs in a context with its workflow's ids and those its
    input carries (`receipt_id`, `payout_id`, `bill_id`, `telegram_id` attributes)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityInbound(next)


class _ActivityInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        ids: dict[str, object] = {**ids_of_workflow(info.workflow_id)} if info.workflow_id else {}
        for arg in input.args[:1]:
            ids.update({name: getattr(arg, name, None) for name in IDS if getattr(arg, name, None) is not None})
        with payout_context(**ids):
            return await super().execute_activity(input)
