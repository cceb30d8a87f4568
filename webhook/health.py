"""Liveness and readiness (Temporal and ledger reachable)."""

from __future__ import annotations

from aiohttp import web

from runtime.health import readiness, temporal_check
from webhook.keys import DEPS


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    ready, checks = await readiness({"ledger": deps.ledger.ping, "temporal": temporal_check(deps.temporal)})
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)
