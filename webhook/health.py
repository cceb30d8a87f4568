"""Liveness and readiness (Temporal and ledger reachable)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from webhook.keys import DEPS


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(deps.ledger.ping(), timeout=3)
        checks["ledger"] = "ok"
    except Exception as exc:
        checks["ledger"] = f"unavailable: {type(exc).__name__}"
    try:
        await asyncio.wait_for(deps.temporal.service_client.check_health(), timeout=3)
        checks["temporal"] = "ok"
    except Exception as exc:
        checks["temporal"] = f"unavailable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

