"""Liveness and readiness (Temporal and ledger reachable), by the rule every process shares (runtime.health)."""

from __future__ import annotations

from aiohttp import web

from runtime.health import healthz, readyz_answer, temporal_check
from webhook.keys import DEPS

__all__ = ["healthz", "readyz"]


async def readyz(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    return await readyz_answer({"ledger": deps.ledger.ping, "temporal": temporal_check(deps.temporal)})
