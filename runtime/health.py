"""Liveness and readiness, one rule for every process that answers `/healthz` and `/readyz` (the
webhook, the worker, the queue consumer): each named check must pass within its timeout; the answer
names every check's result, 200 when all pass and 503 otherwise. `serve_health` is the small server
the worker and the consumer run beside their work (the webhook serves the same on its internal
listener)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from aiohttp import web
from temporalio.client import Client

from runtime import telemetry
from runtime.settings import ConfigError

# A check returns when its dependency answers, and raises when it does not.
Check = Callable[[], Awaitable[object]]
CHECK_TIMEOUT_SECONDS = 3.0


class NotReady(Exception):
    """A check's own verdict; its message is the answer (other exceptions are named by type)."""


def temporal_check(client: Client) -> Check:
    async def serving() -> None:
        if not await client.service_client.check_health():
            raise NotReady("unavailable: not serving")

    return serving


async def _outcome(check: Check, timeout: float) -> str:
    try:
        await asyncio.wait_for(check(), timeout=timeout)
    except NotReady as exc:
        return str(exc)
    except Exception as exc:  # any failure of a dependency is an answer, not an error of ours
        return f"unavailable: {type(exc).__name__}"
    return "ok"


async def readiness(checks: Mapping[str, Check], timeout: float = CHECK_TIMEOUT_SECONDS) -> tuple[bool, dict[str, str]]:
    """Run the checks side by side; ready when every one answers "ok"."""
    outcomes = await asyncio.gather(*(_outcome(check, timeout) for check in checks.values()))
    results = dict(zip(checks, outcomes, strict=True))
    return all(result == "ok" for result in results.values()), results


async def healthz(request: web.Request) -> web.Response:
    """`GET /healthz`: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz_answer(checks: Mapping[str, Check]) -> web.Response:
    """`GET /readyz`'s answer for these checks: `{"ready", "checks"}`, 200 or 503."""
    ready, results = await readiness(checks)
    return web.json_response({"ready": ready, "checks": results}, status=200 if ready else 503)


class Readiness(Protocol):
    """What a process's `/readyz` asks: its named checks, as they stand now."""

    def checks(self) -> dict[str, Check]: ...


_READINESS: web.AppKey[Readiness] = web.AppKey("readiness", Readiness)


async def _readyz(request: web.Request) -> web.Response:
    return await readyz_answer(request.app[_READINESS].checks())


async def serve_health(
    readiness: Readiness, *, host: str, port: int, prometheus: bool, who: str, port_variable: str
) -> tuple[web.AppRunner, int]:
    """Serve `/healthz`, `/readyz` and (with `prometheus`) `/metrics` on host:port (0 picks a free port);
    returns the runner and the bound port. A port that cannot be had stops the process with a
    ConfigError naming `port_variable`."""
    app = web.Application()
    app[_READINESS] = readiness
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", _readyz)
    if prometheus:
        app.router.add_get("/metrics", telemetry.metrics_endpoint)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"{who} cannot serve /healthz, /readyz and /metrics on {host}:{port} ({exc.strerror}): "
            f"set {port_variable} to a free port (0 picks one)"
        ) from None
    bound = int(runner.addresses[0][1]) if runner.addresses else port
    return runner, bound
